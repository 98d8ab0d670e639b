"""``--format json``: the report's machine contract (see ``docs/json-schema.md``)."""

from __future__ import annotations

import json

from infraprof.ranking import Report

file_extension = ".json"


def render_json(report: Report) -> str:
    """UTF-8 JSON text; non-ASCII names are kept as is (valid JSON escapes quotes etc.).

    ``data_quality`` (last key) lists the rows the reader left out: ``{table, column, issue,
    rows_dropped}`` per table and reason, empty for a clean export."""
    document = report.to_dict()
    document["data_quality"] = [issue.to_dict() for issue in report.trace.data_quality]
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
