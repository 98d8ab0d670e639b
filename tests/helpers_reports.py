"""Reports for the renderer tests: built once per session, with volatile fields made stable.

Golden files live in ``tests/golden/``; regenerate them with
``INFRAPROF_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render_golden.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import replace
from functools import cache
from pathlib import Path

from infraprof import __version__
from infraprof.inputs import load_trace
from infraprof.ranking import Report, build_report

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
MINIWEATHER = "ncar-miniweather-nsys/miniweather_baseline.nsys2022.4-export.sqlite"
DEMO = ROOT / "sample_traces" / "demo_host_stall.sqlite"
HOSTILE = '<script>alert("x")</script> & "quoted"'


@cache
def report_for(path: Path) -> Report:
    """The full report of ``path`` (cached: renderers never modify a report)."""
    return build_report(load_trace(path, None))


def stable(report: Report, name: str) -> Report:
    """``report`` with its input paths replaced by ``<traces>/name`` (no absolute paths)."""
    meta = replace(report.trace.meta, source=f"<traces>/{name}", sqlite_path=f"<traces>/{name}")
    return replace(report, trace=replace(report.trace, meta=meta))


def stable_text(text: str) -> str:
    """Text with the infraprof version replaced (a release must not invalidate goldens)."""
    return text.replace(f"infraprof {__version__}", "infraprof <version>")


def stable_json(text: str) -> str:
    """``render_json`` output with ``tool.version`` replaced, re-serialised the same way."""
    data = json.loads(text)
    data["tool"]["version"] = "<version>"
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with ``tests/golden/name``; rewrite it when INFRAPROF_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if os.environ.get("INFRAPROF_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{path} missing: run with INFRAPROF_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{name} differs from the golden file; if the change is intended, regenerate with "
        "INFRAPROF_UPDATE_GOLDEN=1 and review the diff")


def hostile_copy(dest_dir: Path) -> Path:
    """``demo_host_stall.sqlite`` with its top kernel renamed to :data:`HOSTILE`."""
    dest = dest_dir / "hostile.sqlite"
    shutil.copyfile(DEMO, dest)
    with sqlite3.connect(dest) as conn:
        row = conn.execute("SELECT demangledName, shortName FROM CUPTI_ACTIVITY_KIND_KERNEL "
                           "GROUP BY demangledName ORDER BY SUM(end - start) DESC LIMIT 1"
                           ).fetchone()
        conn.executemany("UPDATE StringIds SET value = ? WHERE id = ?",
                         [(HOSTILE, row[0]), (HOSTILE, row[1])])
    conn.close()
    return dest
