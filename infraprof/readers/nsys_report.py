"""``.nsys-rep``/``.qdrep`` reports: convert to SQLite with the installed nsys, cached.

The export runs on a private copy of the report (nsys may write beside its input) and lands in
the cache through a temporary file and an atomic rename. A cached export is reused while it is
newer than the report and starts with the SQLite magic (an interrupted export leaves a corrupt
file that is newer than the report, so mtimes alone are not trusted).

Cache directory: ``$INFRAPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/infraprof``, else
``~/.cache/infraprof``; one file per report keyed by its absolute path, size and mtime. A cached
export is also checked against its own header (not truncated) before it is trusted, and rebuilt
otherwise. Each export works in ``infraprof-export-<pid>-*``; one left behind by a killed run
(its pid gone, or older than :data:`STALE_EXPORT_S`) is removed by the next export.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from infraprof.cache_paths import cache_dir
from infraprof.capture import nsys as nsys_tool
from infraprof.errors import InputError, ToolError
from infraprof.readers.sqlite_db import check_not_truncated, has_sqlite_header

REPORT_MAGIC = b"NVIDIA Tegra Profiler Report"
_VERSION_PATTERNS = (
    re.compile(rb"NSIGHT_SYSTEMS_VERSION=(\d{4}\.\d+(?:\.\d+)*)"),
    re.compile(rb"NsightSystems-cli-(\d{4}\.\d+(?:\.\d+)*)"),
    re.compile(rb"nsight-systems-(\d{4}\.\d+(?:\.\d+)*)"),
)
# Newer reports (2023.4+) carry their version in the header: ``...Report 2023@4@4@54-...``.
_HEADER_VERSION_RE = re.compile(rb"^NVIDIA Tegra Profiler Report (\d{4})@(\d+)@(\d+)@(\d+)")
# What nsys export prints for a damaged input (2022.4: a cut file says "Section Table Reference
# magic number mismatch", flipped bytes "LZ4 decompression failed"): bad input, not a tool fault.
_CORRUPT_MARKERS = ("magic number", "decompression failed", "corrupt", "truncated",
                    "unexpected end of file", "failed to parse")
_TOO_NEW_MARKERS = (
    "missing required fields", "Can't parse message", "newer version", "Version number is invalid",
)


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
    header = _HEADER_VERSION_RE.match(data)
    if header:
        return ".".join(part.decode() for part in header.groups())
    for pattern in _VERSION_PATTERNS:
        match = pattern.search(data)
        if match:
            return match.group(1).decode()
    return None


def _version_key(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    parts = re.findall(r"\d+", version)
    return tuple(int(p) for p in parts[:3]) if parts else None


def _is_newer(report_version: str | None, installed: str | None) -> bool:
    """True when the report was written by a newer nsys (year.minor.patch) than ``installed``."""
    report_key, installed_key = _version_key(report_version), _version_key(installed)
    return report_key is not None and installed_key is not None and report_key > installed_key


def _cache_path(report: Path) -> Path:
    st = report.stat()
    key = f"{report.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    digest = hashlib.sha256(key).hexdigest()[:20]
    return cache_dir() / "sqlite" / f"{report.stem}-{digest}.sqlite"


STALE_EXPORT_S = 24 * 3600


def _cached(report: Path, target: Path) -> bool:
    if not (target.is_file() and target.stat().st_mtime_ns >= report.stat().st_mtime_ns
            and has_sqlite_header(target)):
        return False
    try:
        check_not_truncated(target)
    except InputError:
        target.unlink(missing_ok=True)
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_exports(folder: Path, now: float | None = None) -> list[Path]:
    """Remove ``infraprof-export-<pid>-*`` work directories of runs that died (pid gone, or
    older than :data:`STALE_EXPORT_S` whatever the pid). Returns what was removed."""
    removed = []
    now = time.time() if now is None else now
    for work in folder.glob("infraprof-export-*"):
        if not work.is_dir() or work.is_symlink():
            continue
        pid = work.name.split("-")[2]
        try:
            age = now - work.stat().st_mtime
        except OSError:
            continue
        dead = not pid.isdigit() or not _pid_alive(int(pid))
        if (dead and age > 60) or age > STALE_EXPORT_S:
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


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
    remove_stale_exports(target.parent)
    if progress:
        progress(f"Exporting {report.name} to SQLite with nsys")
    with tempfile.TemporaryDirectory(prefix=f"infraprof-export-{os.getpid()}-",
                                     dir=target.parent) as tmp:
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
            written_by = sniff_report_version(report)
            try:
                installed: str | None = nsys_tool.nsys_version(nsys)
            except ToolError:
                installed = None
            if _is_newer(written_by, installed) or any(
                marker in run.stderr + run.stdout for marker in _TOO_NEW_MARKERS
            ):
                raise InputError(
                    f"{report}: report written by nsys {written_by or 'unknown'}"
                    f" is newer than the installed nsys {installed or '(unknown version)'} can "
                    "read; "
                    "export it to SQLite with the nsys that captured it (or a newer one) and "
                    "pass the .sqlite"
                )
            if any(marker in message.lower() for marker in _CORRUPT_MARKERS):
                raise InputError(f"{report}: the report is truncated or corrupt (nsys export: "
                                 f"{message}); copy it again or re-run the capture")
            raise ToolError(f"{report}: `nsys export` failed: {message}")
        os.replace(out, target)
    return target
