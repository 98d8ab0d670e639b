"""infraprof's own JSON documents as inputs: ``analyze --format json`` output and gate
metrics (``infraprof.gate.run/…``), plain or gzip-compressed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from infraprof.errors import InputError
from infraprof.inputs.detect import JSON_DOCUMENT_KINDS
from infraprof.inputs.source import open_input

WANTED: Final = "`infraprof analyze --format json` output or gate metrics JSON"


def read_json_document(path: Path) -> dict[str, Any]:
    """The parsed document; ``InputError`` (exit 3) when it is not one of ours or invalid."""
    opened = open_input(path, JSON_DOCUMENT_KINDS, WANTED)
    try:
        doc = json.loads(opened.path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc}); re-run the command that wrote it"
                         ) from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{path}: JSON is not an object; pass {WANTED}")
    return doc
