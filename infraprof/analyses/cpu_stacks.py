"""CPU stacks of the trace's nsys sampling (``--sample``), per thread, optionally only the
samples taken while a GPU was idle.

Each CPU sample (``trace.cpu_samples``) points at a callchain (``trace.callchains`` rows with
``source == "sampling"``, ``depth`` 0 = the leaf). Stacks are kept root first. With
``idle_only`` only samples whose time lies in an idle gap of any device are kept (the union of
the devices' ``DeviceTimeline.gaps``; profiler-overhead time is not a gap). Frame names have
whitespace runs folded to one space (empty names become ``?``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof import intervals
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.model import Trace
from infraprof.tables import plain_text

_SPACE = re.compile(r"\s+")

Frame = tuple[str, str]  # (symbol, module)


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


def _text_or_none(value: object) -> object:
    """A factorized text value with null (factorize gives NaN for None) as None."""
    return None if value is None or (isinstance(value, float) and value != value) else value


def _chains(frames: pd.DataFrame, wanted: npt.ArrayLike | None = None
            ) -> dict[int, tuple[Frame, ...]]:
    """The sampled callchains (of ids ``wanted`` only, when given) as frame tuples, root
    first. Each distinct (symbol, module) pair is cleaned once; the chains are runs of one
    sorted frame table (no group per chain)."""
    f = frames[frames["source"] == "sampling"]
    if wanted is not None:
        f = f[f["callchain_id"].isin(np.asarray(wanted))]
    f = f[f["callchain_id"].notna()].sort_values(["callchain_id", "depth"],
                                                 ascending=[True, False])
    if f.empty:
        return {}
    symbol_codes, symbols = pd.factorize(plain_text(f["symbol"]), use_na_sentinel=False)
    module_codes, modules = pd.factorize(plain_text(f["module"]), use_na_sentinel=False)
    width = len(modules)
    pair_codes, pairs = pd.factorize(symbol_codes.astype(np.int64) * width + module_codes)
    distinct = np.empty(len(pairs), dtype=object)  # one Frame per distinct pair
    for index, pair in enumerate(pairs.tolist()):
        s, m = _text_or_none(symbols[pair // width]), _text_or_none(modules[pair % width])
        distinct[index] = (_clean(str(s if s is not None else m)), _clean(str(m or "")))
    row_frames = distinct[pair_codes]
    ids = f["callchain_id"].to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    ends = np.append(starts[1:], len(ids))
    return {cid: tuple(row_frames[a:b]) for cid, a, b in
            zip(ids[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)}


def idle_mask(timelines: Sequence[DeviceTimeline], times_ns: npt.ArrayLike
              ) -> npt.NDArray[np.bool_]:
    """Which of ``times_ns`` lie inside a GPU idle gap of any device."""
    times = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    if not timelines or not len(times):
        return np.zeros(len(times), dtype=bool)
    # one device's gaps are disjoint and sorted already (holes between busy intervals)
    gaps = timelines[0].gaps if len(timelines) == 1 else intervals.union(
        np.concatenate([t.gaps.starts for t in timelines]),
        np.concatenate([t.gaps.ends for t in timelines]))
    return intervals.contains(gaps, times)


def thread_stacks(trace: Trace, timelines: Sequence[DeviceTimeline], idle_only: bool = False
                  ) -> list[ThreadStacks]:
    """Sampled stacks per thread (ordered by pid, tid); samples without a callchain are
    dropped; ``idle_only``: only samples inside a GPU idle gap of ``timelines``."""
    samples = trace.cpu_samples.sort_values(["start_ns", "global_tid"], kind="stable")
    if idle_only:
        samples = samples[idle_mask(timelines, samples["start_ns"].to_numpy(dtype=np.int64))]
    chains = _chains(trace.callchains, samples["callchain_id"].dropna().unique())
    names = {int(g): str(n or "") for g, n in zip(trace.threads["global_tid"],
                                                  trace.threads["name"], strict=True)}
    out = []
    for (pid, tid, gtid), g in samples.groupby(["pid", "tid", "global_tid"], sort=True):
        stacks = [chains[c] for c in g["callchain_id"].tolist() if c in chains]
        if stacks:
            out.append(ThreadStacks(int(str(pid)), int(str(tid)), names.get(int(str(gtid)), ""),
                                    stacks))
    return out


def stack_counts(threads: Sequence[ThreadStacks]) -> list[tuple[list[str], int]]:
    """(``[thread label, root symbol, …, leaf symbol]``, samples) per distinct stack, in
    first-seen order: the input of :func:`infraprof.collapsed.write_collapsed`."""
    counts: dict[tuple[str, ...], int] = {}
    for th in threads:
        for stack in th.stacks:
            key = (th.label, *(symbol for symbol, _ in stack))
            counts[key] = counts.get(key, 0) + 1
    return [(list(key), n) for key, n in counts.items()]
