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
from infraprof.readers.pyspy import parse_frame

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


def _speedscope(profiles: list[tuple[str, list[tuple[Frame, ...]], list[int]]],
                name: str) -> str:
    """speedscope JSON of ``(profile name, stacks root first, weights)`` profiles."""
    frames: list[SpeedscopeFrame] = []
    index: dict[Frame, int] = {}
    out: list[SpeedscopeProfile] = []
    for label, stacks, weights in profiles:
        samples = []
        for stack in stacks:
            ids = []
            for fr in stack:
                if fr not in index:
                    index[fr] = len(frames)
                    frames.append({"name": fr[0], "file": fr[1]})
                ids.append(index[fr])
            samples.append(ids)
        out.append({"type": "sampled", "name": label, "unit": "none", "startValue": 0,
                    "endValue": int(sum(weights)), "samples": samples, "weights": weights})
    doc: SpeedscopeFile = {
        "$schema": SPEEDSCOPE_SCHEMA, "shared": {"frames": frames}, "profiles": out,
        "name": name, "activeProfileIndex": 0, "exporter": f"infraprof {__version__}",
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


def render_speedscope(report: Report, idle_only: bool = False) -> str:
    """speedscope JSON of the nsys CPU samples: one sampled profile per thread."""
    what = "CPU samples during GPU idle" if idle_only else "CPU samples"
    return _speedscope([(f"{th.label} pid {th.pid}", th.stacks, [1] * len(th.stacks))
                        for th in thread_stacks(report, idle_only)],
                       f"{what}: {report.trace.meta.source}")


def speedscope_from_collapsed(text: str, name: str) -> str:
    """speedscope JSON of collapsed-stack text (``root;…;leaf count`` lines, e.g. py-spy's):
    one weighted profile per leading ``thread (…)`` frame, frames ``func (file:line)`` split
    into name and file."""
    by_thread: dict[str, tuple[list[tuple[Frame, ...]], list[int]]] = {}
    for line in text.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        parts = stack_text.split(";")
        label = parts.pop(0) if parts[0].startswith("thread (") else "all threads"
        stacks, weights = by_thread.setdefault(label, ([], []))
        stacks.append(tuple(_split_frame(p) for p in parts))
        weights.append(int(count))
    return _speedscope([(label, *by_thread[label]) for label in sorted(by_thread)], name)


def _split_frame(text: str) -> Frame:
    func, path, line = parse_frame(text)
    return (func, f"{path}:{line}" if path and line else path)


def render_collapsed(report: Report, idle_only: bool = False) -> str:
    """Collapsed stacks, one ``stack count`` line per distinct stack, sorted by stack."""
    return write_collapsed(cpu_stacks.stack_counts(thread_stacks(report, idle_only)))
