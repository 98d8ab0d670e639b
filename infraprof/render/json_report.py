"""``--format json``: the report's machine contract (see ``docs/json-schema.md``)."""

from __future__ import annotations

import json

from infraprof.ranking import Report

file_extension = ".json"


def render_json(report: Report) -> str:
    """UTF-8 JSON text; non-ASCII names are kept as is (valid JSON escapes quotes etc.)."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
