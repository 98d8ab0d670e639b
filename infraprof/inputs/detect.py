"""What an input path holds, by content (magic bytes, JSON keys, CSV headers), not by name.

:func:`detect` reads at most :data:`HEAD_BYTES` of a file (of its inflated content for gzip) and
never writes anything. The suffix only picks the wording of the error for unrecognised content.
"""

from __future__ import annotations

import codecs
import gzip
import re
import stat
import zlib
from enum import Enum
from pathlib import Path
from typing import Final

from infraprof.errors import InputError
from infraprof.readers.ncu_csv import csv_page_of_text
from infraprof.readers.ncu_report import MAGIC as NCU_MAGIC
from infraprof.readers.nsys_report import REPORT_MAGIC
from infraprof.readers.sqlite_db import SQLITE_MAGIC

HEAD_BYTES: Final = 1 << 20
GZIP_MAGIC: Final = b"\x1f\x8b"
_GATE_SCHEMA_RE: Final = re.compile(r'"schema"\s*:\s*"infraprof\.gate\.run/')
_ANALYZE_TOOL_RE: Final = re.compile(r'"tool"\s*:\s*\{\s*"name"\s*:\s*"infraprof"')
_RAW_LINE_RE: Final = re.compile(r"^\S.*\s\d+\s*$")


class InputKind(Enum):
    """Every kind of input infraprof reads; ``value`` is a stable identifier."""

    NSYS_SQLITE = "nsys-sqlite"
    NSYS_REPORT = "nsys-report"
    CAPTURE_FOLDER = "capture-folder"
    NCU_REPORT = "ncu-report"
    NCU_CSV_RAW = "ncu-csv-raw"
    NCU_CSV_DETAILS = "ncu-csv-details"
    KINETO = "kineto"
    PYSPY_CHROMETRACE = "pyspy-chrometrace"
    PYSPY_SPEEDSCOPE = "pyspy-speedscope"
    PYSPY_RAW = "pyspy-raw"
    PYSPY_SVG = "pyspy-svg"
    ANALYZE_JSON = "analyze-json"
    GATE_METRICS_JSON = "gate-metrics-json"

    @property
    def description(self) -> str:
        """Human wording, e.g. ``"an nsys SQLite export"``."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: Final = {
    InputKind.NSYS_SQLITE: "an SQLite file (nsys export)",
    InputKind.NSYS_REPORT: "an nsys report",
    InputKind.CAPTURE_FOLDER: "a capture folder",
    InputKind.NCU_REPORT: "an Nsight Compute report",
    InputKind.NCU_CSV_RAW: "an ncu CSV export (raw page)",
    InputKind.NCU_CSV_DETAILS: "an ncu CSV export (details page)",
    InputKind.KINETO: "a PyTorch profiler (Kineto) trace",
    InputKind.PYSPY_CHROMETRACE: "a Chrome trace-event JSON (py-spy chrometrace)",
    InputKind.PYSPY_SPEEDSCOPE: "a speedscope JSON profile (py-spy)",
    InputKind.PYSPY_RAW: "collapsed stacks (py-spy raw)",
    InputKind.PYSPY_SVG: "a flame-graph SVG (py-spy)",
    InputKind.ANALYZE_JSON: "`infraprof analyze --format json` output",
    InputKind.GATE_METRICS_JSON: "infraprof gate metrics JSON",
}

NSYS_KINDS: Final = frozenset({InputKind.NSYS_SQLITE, InputKind.NSYS_REPORT})
TRACE_KINDS: Final = NSYS_KINDS | {InputKind.CAPTURE_FOLDER, InputKind.KINETO}
NCU_KINDS: Final = frozenset({InputKind.NCU_REPORT, InputKind.NCU_CSV_RAW,
                              InputKind.NCU_CSV_DETAILS})
PYSPY_KINDS: Final = frozenset({InputKind.PYSPY_CHROMETRACE, InputKind.PYSPY_SPEEDSCOPE,
                                InputKind.PYSPY_RAW, InputKind.PYSPY_SVG})
JSON_DOCUMENT_KINDS: Final = frozenset({InputKind.ANALYZE_JSON, InputKind.GATE_METRICS_JSON})

_UNRECOGNISED_HINTS: Final = {
    ".sqlite": "not an nsys report or SQLite export (unrecognised content); pass a .nsys-rep/"
               ".qdrep file or the output of `nsys export --type sqlite`",
    ".nsys-rep": "not an nsys report (no report magic); is it complete? Pass the report nsys "
                 "wrote or its `nsys export --type sqlite` output",
    ".ncu-rep": "not an Nsight Compute report (no NVR magic); is it complete?",
    ".csv": "not an ncu CSV export (no header with \"ID\" and \"Kernel Name\"); export with "
            "`ncu --import R.ncu-rep --csv --page raw`",
    ".json": "JSON that is neither a PyTorch profiler trace, py-spy output, `infraprof "
             "analyze --format json` output nor gate metrics",
}
_UNRECOGNISED_HINTS[".qdrep"] = _UNRECOGNISED_HINTS[".nsys-rep"]
_GENERIC_HINT: Final = (
    "unrecognised content; pass an nsys report (.nsys-rep/.qdrep), its SQLite export, a "
    "capture folder, an Nsight Compute report or CSV export, py-spy output, or infraprof JSON"
)


def is_gzip(path: Path) -> bool:
    """True when ``path`` starts with the gzip magic (never raises)."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    except OSError:
        return False


def check_readable(path: Path) -> None:
    """``InputError`` (exit 3) when ``path`` is missing, unreadable, not a regular file or
    folder (a pipe is never opened, so this never blocks), or an empty file."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: no such file or directory; check the path") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    if stat.S_ISDIR(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: is not a regular file (a pipe, socket or device); save the "
                         "data to a file and pass that")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    if info.st_size == 0:
        raise InputError(f"{path}: file is empty; re-run the capture or the export")


def read_head(path: Path, limit: int = HEAD_BYTES) -> bytes:
    """The first ``limit`` bytes of ``path``'s content, inflated when it is gzip."""
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as fh:
                return fh.read(limit)
        with path.open("rb") as fh:
            return fh.read(limit)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc}); compress it again "
                         "or pass the uncompressed file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc


def detect(path: Path) -> InputKind:
    """The :class:`InputKind` of ``path``: a directory is a capture folder; a file is sniffed
    by content (gzip is looked through). ``InputError`` (exit 3) for a missing, empty,
    unreadable or unrecognised input, naming the file and what to pass instead."""
    check_readable(path)
    if path.is_dir():
        return InputKind.CAPTURE_FOLDER
    head = read_head(path)
    kind = kind_of_head(head)
    if kind is None:
        if not head:
            raise InputError(f"{path}: compressed file is empty; re-run the capture or export")
        name = path.name.lower().removesuffix(".gz")
        hint = next((text for suffix, text in _UNRECOGNISED_HINTS.items()
                     if name.endswith(suffix)), _GENERIC_HINT)
        raise InputError(f"{path}: {hint}")
    return kind


def kind_of_head(head: bytes) -> InputKind | None:
    """The kind of a file that starts with ``head`` (up to :data:`HEAD_BYTES`), or ``None``."""
    for magic, kind in ((SQLITE_MAGIC, InputKind.NSYS_SQLITE),
                        (REPORT_MAGIC, InputKind.NSYS_REPORT), (NCU_MAGIC, InputKind.NCU_REPORT)):
        if head.startswith(magic):
            return kind
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    text = text.lstrip("\ufeff").lstrip()
    if text.startswith(("{", "[")):
        return _json_kind(text)
    if text.startswith(("<?xml", "<svg")):
        return InputKind.PYSPY_SVG if "<svg" in text else None
    page = csv_page_of_text(text)
    if page is not None:
        return InputKind.NCU_CSV_DETAILS if page == "details" else InputKind.NCU_CSV_RAW
    return InputKind.PYSPY_RAW if _is_collapsed(text, complete=len(head) < HEAD_BYTES) else None


def _json_kind(text: str) -> InputKind | None:
    """JSON documents by their top-level keys (as written by each producer)."""
    from infraprof.readers.kineto import looks_like_kineto

    if looks_like_kineto(text):
        return InputKind.KINETO
    if text.startswith("["):
        return InputKind.PYSPY_CHROMETRACE if '"ph"' in text or text == "[]" else None
    if '"schema_version"' in text and _ANALYZE_TOOL_RE.search(text):
        return InputKind.ANALYZE_JSON
    if _GATE_SCHEMA_RE.search(text):
        return InputKind.GATE_METRICS_JSON
    if "speedscope.app/file-format-schema" in text or (
            '"profiles"' in text and '"shared"' in text):
        return InputKind.PYSPY_SPEEDSCOPE
    if '"traceEvents"' in text:
        return InputKind.PYSPY_CHROMETRACE
    return None


def _is_collapsed(text: str, complete: bool) -> bool:
    """Collapsed stacks: every line ``frame;frame;... <count>`` (the last line of a partial
    head may be cut)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    return bool(lines) and all(_RAW_LINE_RE.match(line) for line in lines)
