"""The ``nsys`` binary: locate it, read its version, export reports to SQLite."""

from __future__ import annotations

import re
from pathlib import Path

from infraprof.capture.proc import CompletedRun, find_tool, require_tool, run_tool
from infraprof.errors import ToolError

NSYS_INSTALL_HINT = (
    "install Nsight Systems (on Debian 12: `sudo make tools` in the infraprof checkout, "
    "i.e. scripts/install-nsight.sh) or set INFRAPROF_NSYS to the nsys binary"
)
EXPORT_TIMEOUT_S = 1800.0
_VERSION_RE = re.compile(r"(\d{4}\.\d+(?:\.\d+)*)")


def find_nsys() -> str | None:
    """Path of nsys (``$INFRAPROF_NSYS`` or ``PATH``), or ``None``."""
    return find_tool("nsys", "INFRAPROF_NSYS")


def nsys_version(nsys: str | None = None) -> str:
    """The installed nsys version, e.g. ``"2022.4.2.1"``; raises :class:`ToolError`."""
    binary = nsys or require_tool("nsys", NSYS_INSTALL_HINT, "INFRAPROF_NSYS")
    run = run_tool([binary, "--version"], timeout_s=60)
    match = _VERSION_RE.search(run.stdout + run.stderr)
    if run.returncode != 0 or match is None:
        raise ToolError(f"`{binary} --version` failed (rc {run.returncode}): {run.stderr.strip()}")
    return match.group(1)


def export_sqlite(report: Path, output: Path, nsys: str, timeout_s: float = EXPORT_TIMEOUT_S
                  ) -> CompletedRun:
    """Run ``nsys export --type sqlite`` of ``report`` into ``output`` (overwritten).

    The caller is responsible for running this on a copy of the user's report, because nsys may
    write beside its input.
    """
    argv = [
        nsys, "export", "--type", "sqlite", "--force-overwrite", "true",
        "--output", str(output), str(report),
    ]
    return run_tool(argv, timeout_s=timeout_s, cwd=output.parent)
