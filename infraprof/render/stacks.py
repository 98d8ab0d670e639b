"""CPU stacks of the trace's nsys sampling (``--sample``) as speedscope JSON or collapsed stacks.

Each CPU sample (``trace.cpu_samples``) points at a callchain (``trace.callchains`` rows with
``source == "sampling"``, ``depth`` 0 = the leaf). Stacks are written root first. With
``idle_only`` only samples taken while a GPU was idle are kept: the sample's time lies in an
idle gap of any device (``report.analysis.timelines``; profiler-overhead time is not a gap).

* speedscope (https://www.speedscope.app/file-format-schema.json): one ``sampled`` profile per
  thread, weight 1 per sample (``unit: none``), frames ``{name: symbol, file: module}``;
* collapsed (Brendan Gregg's ``stackcollapse`` output): ``thread (tid);root;…;leaf count``, one
  line per distinct stack; ``;`` inside names becomes ``:`` and whitespace runs one space.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd

from infraprof import __version__
from infraprof import intervals as iv
from infraprof.ranking import Report
from infraprof.readers.pyspy import parse_frame

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
_SPACE = re.compile(r"\s+")

Frame = tuple[str, str]  # (symbol, module)


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


@dataclass(frozen=True)
class ThreadStacks:
    """The samples of one thread, in time order, as stacks of frames (root first)."""

    pid: int
    tid: int
    name: str
    stacks: list[tuple[Frame, ...]]

    @property
    def label(self) -> str:
        return f"{self.name} ({self.tid})" if self.name else f"thread ({self.tid})"


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip() or "?"


def _chains(frames: pd.DataFrame) -> dict[int, tuple[Frame, ...]]:
    f = frames[frames["source"] == "sampling"].sort_values(["callchain_id", "depth"],
                                                           ascending=[True, False])
    out: dict[int, tuple[Frame, ...]] = {}
    for cid, g in f.groupby("callchain_id", sort=False):
        out[int(str(cid))] = tuple(
            (_clean(str(s if s is not None else m)), _clean(str(m or "")))
            for s, m in zip(g["symbol"], g["module"], strict=True))
    return out


def idle_mask(report: Report, times_ns: np.ndarray) -> np.ndarray:
    """Which of ``times_ns`` lie inside a GPU idle gap of any device."""
    timelines = report.analysis.timelines if report.analysis else []
    if not timelines or not len(times_ns):
        return np.zeros(len(times_ns), dtype=bool)
    gaps = iv.union(np.concatenate([t.gaps.starts for t in timelines]),
                    np.concatenate([t.gaps.ends for t in timelines]))
    i = np.searchsorted(gaps.starts, times_ns, side="right") - 1
    ok = i >= 0
    out = np.zeros(len(times_ns), dtype=bool)
    out[ok] = times_ns[ok] < gaps.ends[i[ok]]
    return out


def thread_stacks(report: Report, idle_only: bool = False) -> list[ThreadStacks]:
    """Sampled stacks per thread (ordered by pid, tid); samples without a callchain are
    dropped."""
    t = report.trace
    samples = t.cpu_samples.sort_values(["start_ns", "global_tid"], kind="stable")
    if idle_only:
        samples = samples[idle_mask(report, samples["start_ns"].to_numpy(dtype=np.int64))]
    chains = _chains(t.callchains)
    names = {int(g): str(n or "") for g, n in zip(t.threads["global_tid"], t.threads["name"],
                                                  strict=True)}
    out = []
    for (pid, tid, gtid), g in samples.groupby(["pid", "tid", "global_tid"], sort=True):
        stacks = [chains[c] for c in g["callchain_id"].tolist() if c in chains]
        if stacks:
            out.append(ThreadStacks(int(str(pid)), int(str(tid)), names.get(int(str(gtid)), ""),
                                    stacks))
    return out


def _speedscope(profiles: list[tuple[str, list[tuple[Frame, ...]], list[int]]],
                name: str) -> str:
    """The one speedscope writer: ``(label, stacks root first, weights)`` per profile."""
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
                    "endValue": sum(weights), "samples": samples, "weights": weights})
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


def collapsed_counts(report: Report, idle_only: bool = False) -> dict[str, int]:
    """``"thread (tid);root;…;leaf" -> samples``."""
    counts: dict[str, int] = {}
    for th in thread_stacks(report, idle_only):
        root = _clean(th.label).replace(";", ":")
        for stack in th.stacks:
            key = ";".join([root, *(s.replace(";", ":") for s, _ in stack)])
            counts[key] = counts.get(key, 0) + 1
    return counts


def render_collapsed(report: Report, idle_only: bool = False) -> str:
    """Collapsed stacks, one ``stack count`` line per distinct stack, sorted by stack."""
    counts = collapsed_counts(report, idle_only)
    return "".join(f"{k} {counts[k]}\n" for k in sorted(counts))
