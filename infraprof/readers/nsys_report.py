"""``.nsys-rep``/``.qdrep`` reports: convert to SQLite with the installed nsys, cached.

The export runs on a private copy of the report (nsys may write beside its input) and lands in
the cache through a temporary file and an atomic rename. A cached export is reused while it is
newer than the report and starts with the SQLite magic (an interrupted export leaves a corrupt
file that is newer than the report, so mtimes alone are not trusted).

Cache directory: ``$INFRAPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/infraprof``, else
``~/.cache/infraprof``; one file per report keyed by its absolute path, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from infraprof.capture import nsys as nsys_tool
from infraprof.errors import InputError, ToolError
from infraprof.readers.sqlite_db import has_sqlite_header

REPORT_MAGIC = b"NVIDIA Tegra Profiler Report"
REPORT_SUFFIXES = (".nsys-rep", ".qdrep")
_VERSION_PATTERNS = (
    re.compile(rb"NSIGHT_SYSTEMS_VERSION=(\d{4}\.\d+(?:\.\d+)*)"),
    re.compile(rb"NsightSystems-cli-(\d{4}\.\d+(?:\.\d+)*)"),
    re.compile(rb"nsight-systems-(\d{4}\.\d+(?:\.\d+)*)"),
)
_TOO_NEW_MARKERS = ("missing required fields", "Can't parse message", "newer version")


def is_report(path: Path) -> bool:
    """True when ``path`` starts with the nsys report magic."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(REPORT_MAGIC)) == REPORT_MAGIC
    except OSError:
        return False


def sniff_report_version(path: Path, limit_bytes: int = 64 << 20) -> str | None:
    """Best-effort nsys version that wrote ``path``, from strings embedded in the report."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit_bytes)
    except OSError:
        return None
    for pattern in _VERSION_PATTERNS:
        match = pattern.search(data)
        if match:
            return match.group(1).decode()
    return None


def cache_dir() -> Path:
    base = os.environ.get("INFRAPROF_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "infraprof"


def _cache_path(report: Path) -> Path:
    st = report.stat()
    key = f"{report.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    digest = hashlib.sha256(key).hexdigest()[:20]
    return cache_dir() / "sqlite" / f"{report.stem}-{digest}.sqlite"


def _cached(report: Path, target: Path) -> bool:
    return (
        target.is_file()
        and target.stat().st_mtime_ns >= report.stat().st_mtime_ns
        and has_sqlite_header(target)
    )


def export_report(report: Path, progress: Callable[[str], None] | None = None) -> Path:
    """SQLite export of ``report`` (cached). Raises ``ToolError`` or ``InputError``."""
    target = _cache_path(report)
    if _cached(report, target):
        return target
    nsys = nsys_tool.find_nsys()
    if nsys is None:
        raise ToolError(
            f"{report}: converting an nsys report needs nsys, which is not installed; "
            f"{nsys_tool.NSYS_INSTALL_HINT}, or pass the report's .sqlite export instead"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"Exporting {report.name} to SQLite with nsys")
    with tempfile.TemporaryDirectory(prefix="infraprof-export-", dir=target.parent) as tmp:
        work = Path(tmp)
        copy = work / ("input" + report.suffix)
        shutil.copyfile(report, copy)
        out = work / "export.sqlite"
        run = nsys_tool.export_sqlite(copy, out, nsys)
        if run.timed_out:
            raise ToolError(f"{report}: `nsys export` did not finish in time and was stopped")
        if run.returncode != 0 or not has_sqlite_header(out):
            detail = (run.stderr or run.stdout).strip().splitlines()
            message = detail[-1] if detail else f"rc {run.returncode}"
            if any(marker in run.stderr + run.stdout for marker in _TOO_NEW_MARKERS):
                raise InputError(
                    f"{report}: report written by nsys {sniff_report_version(report) or 'unknown'}"
                    f" is newer than the installed nsys {nsys_tool.nsys_version(nsys)} can read; "
                    "export it to SQLite with the nsys that captured it (or a newer one) and "
                    "pass the .sqlite"
                )
            raise ToolError(f"{report}: `nsys export` failed: {message}")
        os.replace(out, target)
    return target
