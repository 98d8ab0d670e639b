"""CPU stacks of the trace's nsys sampling (``--sample``) as speedscope JSON or collapsed stacks.

The stacks come from :mod:`infraprof.analyses.cpu_stacks` (``idle_only``: only samples taken
while a GPU was idle); this module only writes them:

* speedscope (https://www.speedscope.app/file-format-schema.json): one ``sampled`` profile per
  thread, weight 1 per sample (``unit: none``), frames ``{name: symbol, file: module}``;
* collapsed (Brendan Gregg's ``stackcollapse`` output, :mod:`infraprof.collapsed`):
  ``thread (tid);root;…;leaf count``, one line per distinct stack.
"""

from __future__ import annotations

import json
from typing import TypedDict

from infraprof import __version__
from infraprof.analyses import cpu_stacks
from infraprof.analyses.cpu_stacks import Frame, ThreadStacks
from infraprof.collapsed import write_collapsed
from infraprof.ranking import Report

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


class SpeedscopeFrame(TypedDict):
    name: str
    file: str


class SpeedscopeProfile(TypedDict):
    type: str
    name: str
    unit: str
    startValue: int
    endValue: int
    samples: list[list[int]]
    weights: list[int]


class SpeedscopeShared(TypedDict):
    frames: list[SpeedscopeFrame]


SpeedscopeFile = TypedDict("SpeedscopeFile", {
    "$schema": str, "shared": SpeedscopeShared, "profiles": list[SpeedscopeProfile],
    "name": str, "activeProfileIndex": int, "exporter": str,
})


def thread_stacks(report: Report, idle_only: bool = False) -> list[ThreadStacks]:
    """The report's sampled stacks per thread (see :func:`cpu_stacks.thread_stacks`)."""
    timelines = report.analysis.timelines if report.analysis else []
    return cpu_stacks.thread_stacks(report.trace, timelines, idle_only)


def render_speedscope(report: Report, idle_only: bool = False) -> str:
    """speedscope JSON: one sampled profile per thread."""
    frames: list[SpeedscopeFrame] = []
    index: dict[Frame, int] = {}
    profiles: list[SpeedscopeProfile] = []
    for th in thread_stacks(report, idle_only):
        samples = []
        for stack in th.stacks:
            ids = []
            for fr in stack:
                if fr not in index:
                    index[fr] = len(frames)
                    frames.append({"name": fr[0], "file": fr[1]})
                ids.append(index[fr])
            samples.append(ids)
        profiles.append({
            "type": "sampled", "name": f"{th.label} pid {th.pid}", "unit": "none",
            "startValue": 0, "endValue": len(samples), "samples": samples,
            "weights": [1] * len(samples),
        })
    what = "CPU samples during GPU idle" if idle_only else "CPU samples"
    doc: SpeedscopeFile = {
        "$schema": SPEEDSCOPE_SCHEMA, "shared": {"frames": frames}, "profiles": profiles,
        "name": f"{what}: {report.trace.meta.source}", "activeProfileIndex": 0,
        "exporter": f"infraprof {__version__}",
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


def render_collapsed(report: Report, idle_only: bool = False) -> str:
    """Collapsed stacks, one ``stack count`` line per distinct stack, sorted by stack."""
    return write_collapsed(cpu_stacks.stack_counts(thread_stacks(report, idle_only)))
