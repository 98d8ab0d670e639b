"""Per (category, site, split key): what the gaps charged there add up to, for the gap findings.

The single-category gaps of the :class:`~infraprof.analyses.gap_table.GapTable` (``dependency``
at site ``stream N`` of the next operation, ``unknown`` at ``(unknown)``; ~97 % of a real
trace's gaps) are aggregated with numpy/pandas group-bys; only the gaps with host activity are
walked one by one (their parts, sites and busy-time budget). Both feed the same accumulators,
so the result is what walking every gap in time order gives: accumulators in the order of the
first gap (and part) that hits each, NVTX ranges in the order of their first gap, examples the
top ones by (-attributed ns, gap order). Split keys exist only for host-side categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from infraprof import intervals
from infraprof.analyses.gap_table import CATEGORIES, DEPENDENCY, GapAttribution, GapTable
from infraprof.analyses.phases import PHASES, DevicePhases, phase_codes, phase_of_gap
from infraprof.analyses.sites import site_of
from infraprof.analyses.timeline import DeviceTimeline

HOST = ("host-cpu", "host-wait")


@dataclass
class Accumulator:
    """One (category, site, key): idle and recoverable ns, gap count; ``first`` (row, part
    index) of the first gap that hit it; ``examples`` as (-ns, row, example); ``nvtx`` name →
    [ns, first row]; ``calls`` name → [count, in-gap ns]; ``kernels`` name → ns (launch
    overhead); ``phase`` phase → ns (empty without phases)."""

    first: tuple[int, int]
    idle: int = 0
    impact: int = 0
    gaps: int = 0
    examples: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    nvtx: dict[str, list[int]] = field(default_factory=dict)
    calls: dict[str, list[int]] = field(default_factory=dict)
    kernels: dict[str, int] = field(default_factory=dict)
    phase: dict[str, int] = field(default_factory=dict)

    def add_example(self, ns: int, row: int, example: dict[str, Any], keep: int) -> None:
        self.examples.append((-ns, row, example))
        if len(self.examples) > 4 * keep:
            self.trim_examples(keep)

    def trim_examples(self, keep: int) -> None:
        self.examples.sort(key=lambda e: (e[0], e[1]))
        del self.examples[keep:]


Key = tuple[str, str, str]


def accumulate(table: GapTable, timelines: list[DeviceTimeline], examples: int,
               split: dict[tuple[int, int, str], str],
               phases: dict[int, DevicePhases] | None) -> list[tuple[Key, Accumulator]]:
    """Accumulators of every (category, site, split key) hit by a gap of ``table``, in the
    order of the first gap (and part) that hits each; at most ``examples`` examples each."""
    acc = _single_category(table, examples, phases)
    _host_gaps(table, timelines, acc, examples, split, phases)
    for rec in acc.values():
        rec.trim_examples(examples)
    return sorted(acc.items(), key=lambda kv: kv[1].first)


def example_of(a: GapAttribution, ns: int) -> dict[str, Any]:
    """One example gap of a finding's evidence (``ns``: its time in the finding's category)."""
    return {"device_id": a.device_id, "gap_start_ns": a.start_ns, "gap_end_ns": a.end_ns,
            "attributed_ns": ns, "next_op": a.next_op["name"],
            "launch_call": a.launch and a.launch["name"],
            "drain_call": a.drain and a.drain["name"], "nvtx": a.nvtx, "calls": a.calls[:3]}


def _single_category(table: GapTable, examples: int, phases: dict[int, DevicePhases] | None
                     ) -> dict[Key, Accumulator]:
    """Accumulators of the single-category gaps, by group-bys over their rows (numpy arrays
    of the needed columns: a frame of every gap was ~170 MB of temporaries at 1 M kernels)."""
    rows = np.flatnonzero(table.category >= 0)
    if not len(rows):
        return {}
    group, firsts = _category_stream_groups(table, rows)
    ns = table.dur[rows]
    totals = pd.Series(ns).groupby(group).sum().to_numpy()
    sizes = np.bincount(group)
    acc: dict[Key, Accumulator] = {}
    for g, first in enumerate(firsts.tolist()):
        cat = CATEGORIES[int(table.category[rows[first]])]
        site = (f"stream {int(table.op_stream[rows[first]])}" if cat == "dependency"
                else "(unknown)")
        total, gaps = int(totals[g]), int(sizes[g])
        acc[(cat, site, "")] = Accumulator((int(rows[first]), 0), total, total, gaps)
    recs = list(acc.values())
    launched = table.has_launch[rows]
    pairs = pd.DataFrame({"group": group[launched], "gtid": table.gtid[rows[launched]]})
    del launched
    for g, gtid in pairs.drop_duplicates().itertuples(index=False):
        recs[g].threads.add(gtid)
    del pairs
    _single_nvtx(table, rows, group, ns, recs)
    if phases is not None:
        phase = phase_codes(phases, table.device[rows], table.g0[rows], table.g1[rows])
        for (g, ph), total in _sums_by(group, phase, ns, rows)[0].items():
            recs[g].phase[PHASES[ph]] = total
    _single_examples(table, rows, group, ns, recs, examples)
    return acc


def _category_stream_groups(table: GapTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each gap of ``rows`` by (category, stream of a dependency gap), in
    order of first appearance (as ``groupby(sort=False).ngroup()``), and each group's first
    position."""
    category = table.category[rows].astype(np.int64)
    stream_codes, streams = pd.factorize(
        np.where(category == DEPENDENCY, table.op_stream[rows], 0))
    group = pd.factorize(category * len(streams) + stream_codes)[0]
    del category, stream_codes
    return group, np.unique(group, return_index=True)[1]


def _sums_by(group: np.ndarray, code: np.ndarray, ns: np.ndarray, rows: np.ndarray
             ) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Per (group, code) in ascending order (as a sorted two-key groupby): the summed ns and
    the first (smallest) row. ``code`` holds non-negative integers."""
    width = int(code.max()) + 1
    key = pd.Series(group * width + code)
    sums = pd.Series(ns).groupby(key).sum()
    first = pd.Series(rows).groupby(key).min()
    pairs = [(k // width, k % width) for k in sums.index.tolist()]
    return (dict(zip(pairs, sums.tolist(), strict=True)),
            dict(zip(pairs, first.tolist(), strict=True)))


def _single_nvtx(table: GapTable, rows: np.ndarray, group: np.ndarray, ns: np.ndarray,
                 recs: list[Accumulator]) -> None:
    """NVTX totals of single-category gaps: the launch's range, ``(none)`` without one."""
    labels = [name or "(none)" for name in table.nvtx_names] + ["(none)"]
    label_codes, label_names = pd.factorize(np.array(labels, dtype=object))
    codes = table.nvtx[rows]
    label = label_codes[np.where(codes < 0, len(labels) - 1, codes)]
    sums, firsts = _sums_by(group, label, ns, rows)
    for (g, code), total in sums.items():
        recs[g].nvtx[str(label_names[code])] = [int(total), int(firsts[(g, code)])]


def _single_examples(table: GapTable, rows: np.ndarray, group: np.ndarray, ns: np.ndarray,
                     recs: list[Accumulator], keep: int) -> None:
    """The ``keep`` longest single-category gaps of each group (ties: earlier gap)."""
    order = np.lexsort((rows, -ns, group))
    ordered = group[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, side="left")
    picked = order[rank < keep]
    for g, n, r, a in zip(group[picked].tolist(), ns[picked].tolist(), rows[picked].tolist(),
                          table.records(rows[picked]), strict=True):
        recs[g].examples.append((-n, r, example_of(a, n)))


def _host_gaps(table: GapTable, timelines: list[DeviceTimeline], acc: dict[Key, Accumulator],
               examples: int, split: dict[tuple[int, int, str], str],
               phases: dict[int, DevicePhases] | None) -> None:
    """Add the gaps with host activity, one by one in time order."""
    rows = table.host_rows()
    records = table.records(rows)
    budgets = _host_budgets(table, rows, records, timelines)
    for row, a, (host_ns, budget) in zip(rows.tolist(), records, budgets, strict=True):
        phase = None if phases is None else phase_of_gap(phases, a.device_id, a.start_ns,
                                                         a.end_ns)
        for part, (cat, ns) in enumerate(a.parts.items()):
            key = (cat, site_of(a, cat), split.get((a.device_id, a.start_ns, cat), ""))
            rec = acc.get(key)
            if rec is None:
                rec = acc[key] = Accumulator((row, part))
            rec.first = min(rec.first, (row, part))
            impact = budget * ns // host_ns if cat in HOST else ns
            _add_host_part(rec, a, row, cat, ns, impact, phase, examples)


def _host_budgets(table: GapTable, rows: np.ndarray, records: list[GapAttribution],
                  timelines: list[DeviceTimeline]) -> list[tuple[int, int]]:
    """Per gap of ``rows``: its host-side ns (``host-cpu`` + ``host-wait``) and the part of it
    that is recoverable, ``min(host ns, GPU busy time since the previous gap with host-side
    time on its device, or since the device's first operation)``: one prefix-sum search per
    device for all its gaps."""
    host_ns = np.array([a.parts.get("host-cpu", 0) + a.parts.get("host-wait", 0)
                        for a in records], dtype=np.int64)
    budget = np.zeros(len(rows), dtype=np.int64)
    device, g0, g1 = table.device[rows], table.g0[rows], table.g1[rows]
    for tl in timelines:
        mine = np.flatnonzero((host_ns > 0) & (device == tl.device_id))
        if len(mine):
            since = np.concatenate(([tl.span_start_ns], g1[mine][:-1]))
            busy = intervals.Coverage(tl.busy).within(since, g0[mine])
            budget[mine] = np.minimum(host_ns[mine], busy)
    return list(zip(host_ns.tolist(), budget.tolist(), strict=True))


def _add_host_part(rec: Accumulator, a: GapAttribution, row: int, cat: str, ns: int,
                   impact: int, phase: str | None, examples: int) -> None:
    rec.idle += ns
    rec.impact += impact
    rec.gaps += 1
    if phase is not None:
        rec.phase[phase] = rec.phase.get(phase, 0) + ns
    if a.global_tid is not None:
        rec.threads.add(a.global_tid)
    name = a.where.get(cat) or a.nvtx or "(none)"
    nvtx = rec.nvtx.setdefault(name, [0, row])
    nvtx[0] += ns
    nvtx[1] = min(nvtx[1], row)
    if cat == "launch-overhead":
        kernel = a.next_op["name"]
        rec.kernels[kernel] = rec.kernels.get(kernel, 0) + ns
    for c in a.calls:
        if c["category"] == cat:
            call = rec.calls.setdefault(c["name"], [0, 0])
            call[0] += 1
            call[1] += int(c["dur_ns"])
    rec.add_example(ns, row, example_of(a, ns), examples)
