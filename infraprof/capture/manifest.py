"""``manifest.json`` of a capture folder: what ran, where, with which tools, and the clocks.

Deliberately **no environment variables** (they often hold secrets). Note that the nsys report
and its SQLite export themselves contain the captured process's environment.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infraprof._version import __version__
from infraprof.capture.layout import MANIFEST_NAME
from infraprof.capture.proc import find_tool, run_tool

SCHEMA = 1


def read_clock_anchor(tries: int = 5) -> dict[str, int]:
    """CLOCK_REALTIME and CLOCK_MONOTONIC read back to back (the tightest of ``tries`` pairs):
    ``{"realtime_ns", "monotonic_ns", "read_window_ns"}``."""
    best: dict[str, int] | None = None
    for _ in range(tries):
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        rt = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m2 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        if best is None or m2 - m1 < best["read_window_ns"]:
            best = {"realtime_ns": rt, "monotonic_ns": (m1 + m2) // 2, "read_window_ns": m2 - m1}
    assert best is not None
    return best


def list_gpus(timeout_s: float = 15.0) -> list[str]:
    """``nvidia-smi -L`` lines, or ``[]`` without nvidia-smi or a working driver."""
    smi = find_tool("nvidia-smi")
    if smi is None:
        return []
    run = run_tool([smi, "-L"], timeout_s=timeout_s)
    if run.returncode != 0:
        return []
    return [line.strip() for line in run.stdout.splitlines() if line.strip().startswith("GPU")]


def iso_utc(realtime_ns: int) -> str:
    return datetime.fromtimestamp(realtime_ns / 1e9, tz=timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def base_manifest(command: list[str], tools: Mapping[str, str | None]) -> dict[str, Any]:
    """The static part of a manifest, written before the app starts."""
    return {
        "schema": SCHEMA,
        "infraprof_version": __version__,
        "command": list(command),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "tools": dict(tools),
        "gpus": list_gpus(),
    }


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Atomically (re)write ``folder/manifest.json``."""
    path = folder / MANIFEST_NAME
    tmp = folder / f".{MANIFEST_NAME}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def update_manifest(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into an existing manifest (used after analysis-side steps)."""
    path = folder / MANIFEST_NAME
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data.update(fields)
    write_manifest(folder, data)
    return data
