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
from infraprof.analyses.gap_table import (
    CATEGORIES,
    DEPENDENCY,
    GapAttribution,
    GapTable,
    code_width,
    first_appearances,
)
from infraprof.analyses.host_columns import CODE, CODES, PartRows, gap_code_key, missing, texts
from infraprof.analyses.phases import PHASES, DevicePhases, phase_codes
from infraprof.analyses.sites import nvtx_label, part_sites
from infraprof.analyses.timeline import DeviceTimeline
from infraprof.tables import as_frame, positions_of

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
# the split key of a gap's category time: a mapping (device_id, gap start, category) -> key,
# or a table with those columns (see :func:`split_frame`)
Split = dict[tuple[int, int, str], str] | pd.DataFrame


def accumulate(table: GapTable, timelines: list[DeviceTimeline], examples: int,
               split: Split,
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


BLOCK = 1 << 20
"""Rows at a time of the per-row temporaries of :func:`_single_category` (threads, phases)."""


def _single_category(table: GapTable, examples: int, phases: dict[int, DevicePhases] | None
                     ) -> dict[Key, Accumulator]:
    """Accumulators of the single-category gaps, by group-bys over their rows (numpy arrays
    of the needed columns: a frame of every gap was ~170 MB of temporaries at 1 M kernels).
    Row positions and group numbers are int32 (the 10 M gaps of 10 M kernels: 40 MB each);
    per-row gathers that only feed a set or a code run in blocks of :data:`BLOCK` rows."""
    rows = np.flatnonzero(table.category >= 0)
    if not len(rows):
        return {}
    if len(table) < 2**31:
        rows = rows.astype(np.int32)
    group, firsts = _category_stream_groups(table, rows)
    ns = table.g1[rows]
    ns -= table.g0[rows]
    totals = np.zeros(len(firsts), dtype=np.int64)
    np.add.at(totals, group, ns)
    sizes = np.bincount(group, minlength=len(firsts))
    acc: dict[Key, Accumulator] = {}
    for g, first in enumerate(firsts.tolist()):
        cat = CATEGORIES[int(table.category[rows[first]])]
        site = (f"stream {int(table.op_stream[rows[first]])}" if cat == "dependency"
                else "(unknown)")
        total, gaps = int(totals[g]), int(sizes[g])
        acc[(cat, site, "")] = Accumulator((int(rows[first]), 0), total, total, gaps)
    recs = list(acc.values())
    for g, gtid in _launching_threads(table, rows, group):
        recs[g].threads.add(gtid)
    _single_nvtx(table, rows, group, ns, recs)
    if phases is not None:
        phase = np.concatenate([np.empty(0, dtype=np.int8), *(
            phase_codes(phases, table.device[block], table.g0[block], table.g1[block])
            for block in _blocks(rows))])
        for (g, ph), total in _sums_by(group, phase, ns, rows)[0].items():
            recs[g].phase[PHASES[ph]] = total
        del phase
    _add_examples(table, rows, group, ns, recs, examples)
    return acc


def _blocks(rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` in consecutive slices of :data:`BLOCK` (views)."""
    return [rows[lo:lo + BLOCK] for lo in range(0, len(rows), BLOCK)]


def _launching_threads(table: GapTable, rows: np.ndarray, group: np.ndarray
                       ) -> set[tuple[int, int]]:
    """The distinct (group, launching thread) pairs of the launched gaps of ``rows``, a block
    of rows at a time (each block's threads gathered and coded, not every row's)."""
    pairs: set[tuple[int, int]] = set()
    for block, groups in zip(_blocks(rows), _blocks(group), strict=True):
        launched = table.has_launch[block]
        pairs.update(_distinct_pairs(groups[launched],
                                     table.launch_values("global_tid", block[launched])))
    return pairs


def _category_stream_groups(table: GapTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each gap of ``rows`` by (category, stream of a dependency gap), in
    order of first appearance (as ``groupby(sort=False).ngroup()``), and each group's first
    position. The key is ``category * width + stream code + 1`` for a dependency gap and
    ``category * width`` for the others (streams coded among all the rows: the numbering by
    first appearance does not depend on the codes); group numbers in the narrowest width."""
    category = table.category[rows]
    codes, width = _value_codes(table.op_stream[rows])
    width += 1
    size = len(CATEGORIES) * width
    key_type = np.int32 if size < 2**31 else np.int64
    codes = codes.astype(key_type, copy=False)
    codes += 1
    codes[category != DEPENDENCY] = 0
    key = category.astype(key_type)
    del category
    key *= width
    key += codes
    del codes
    by_appearance, firsts = first_appearances(key, size)
    number = np.empty(size, dtype=code_width(len(by_appearance)))
    number[by_appearance] = np.arange(len(by_appearance))
    group: np.ndarray = number[key]
    return group, firsts


def _value_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """A code ``0 .. count - 1`` per value (equal values, equal codes) and the count of
    distinct values: through a dense table over the values' range when it is small (stream
    ids), else ``pd.factorize``."""
    if not len(values):
        return np.empty(0, dtype=np.int32), 0
    low, high = int(values.min()), int(values.max())
    if high - low < max(1 << 16, len(values)):
        offsets = np.subtract(values, low, dtype=np.int64)  # narrow ids would wrap
        present = np.zeros(high - low + 1, dtype=bool)
        present[offsets] = True
        number = np.cumsum(present, dtype=np.int32) - 1
        return number[offsets], int(present.sum())
    codes, distinct = pd.factorize(values)
    return codes.astype(np.int32), len(distinct)


def _smallest(key: np.ndarray, size: int, values: np.ndarray) -> np.ndarray:
    """The smallest of ``values`` (integers) at each key value ``0 .. size-1`` of ``key``
    (the largest value of their dtype for a key value that does not occur): one
    ``minimum.at`` pass, no sort or hash table, in the values' own dtype (a cast leaves
    numpy's fast ``ufunc.at`` path: 0.46 s instead of 0.02 s for 10 M values)."""
    smallest = np.full(size, np.iinfo(values.dtype).max, dtype=values.dtype)
    np.minimum.at(smallest, key, values)
    return smallest


def _pair_keys(group: np.ndarray, code: np.ndarray, width: int) -> np.ndarray:
    """``group * width + code`` (both non-negative) in int64, or int32 when every key fits:
    never in the inputs' own narrower widths, where the product would wrap."""
    size = (int(group.max()) + 1) * width if len(group) else 0
    key = group.astype(np.int32 if size < 2**31 else np.int64)
    key *= width
    key += code
    return key


def _distinct_pairs(group: np.ndarray, gtid: np.ndarray) -> list[tuple[int, int]]:
    """The distinct (group, thread) pairs (``group`` small non-negative integers), in no
    particular order: threads numbered first, then one presence count over the pair codes."""
    if not len(gtid):
        return []
    codes, threads = pd.factorize(gtid)
    width = max(len(threads), 1)
    pairs = np.flatnonzero(np.bincount(_pair_keys(group, codes, width)))
    return [(int(p // width), int(threads[p % width])) for p in pairs.tolist()]


def _sums_by(group: np.ndarray, code: np.ndarray, ns: np.ndarray, rows: np.ndarray
             ) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Per (group, code) in ascending order (as a sorted two-key groupby): the summed ns and
    the first (smallest) row; ``code`` holds non-negative integers.
    Over a dense key (groups × codes, at most a few times the rows): ``add.at`` and
    ``minimum.at``, no hash table; else a pandas group-by."""
    width = int(code.max()) + 1
    key = _pair_keys(group, code, width)
    size = (int(group.max()) + 1) * width
    if size > max(1 << 16, 4 * len(key)):
        sums = pd.Series(ns).groupby(key).sum()
        first = pd.Series(rows).groupby(key).min()
        keys, totals, firsts = sums.index.tolist(), sums.tolist(), first.tolist()
    else:
        by_key = np.zeros(size, dtype=np.int64)
        np.add.at(by_key, key, ns)
        smallest = _smallest(key, size, rows)
        present = np.flatnonzero(smallest != np.iinfo(smallest.dtype).max)
        keys, totals = present.tolist(), by_key[present].tolist()
        firsts = smallest[present].tolist()
    pairs = [(k // width, k % width) for k in keys]
    return dict(zip(pairs, totals, strict=True)), dict(zip(pairs, firsts, strict=True))


def _single_nvtx(table: GapTable, rows: np.ndarray, group: np.ndarray, ns: np.ndarray,
                 recs: list[Accumulator]) -> None:
    """NVTX totals of single-category gaps: the launch's range, ``(none)`` without one."""
    labels = [name or "(none)" for name in table.nvtx_names] + ["(none)"]
    label_codes, label_names = pd.factorize(np.array(labels, dtype=object))
    label_codes = label_codes.astype(code_width(len(label_names)))
    codes = table.nvtx[rows]
    codes[codes < 0] = len(labels) - 1  # a gathered copy: changed in place
    label = label_codes[codes]
    del codes
    sums, firsts = _sums_by(group, label, ns, rows)
    for (g, code), total in sums.items():
        recs[g].nvtx[str(label_names[code])] = [int(total), int(firsts[(g, code)])]


def _add_examples(table: GapTable, rows: np.ndarray, group: np.ndarray, ns: np.ndarray,
                  recs: list[Accumulator], keep: int) -> None:
    """The ``keep`` largest ``ns`` (gaps of ``rows``, or their parts) of each group as its
    examples (ties: earlier gap). Only the candidates (:func:`_top_candidates`) are sorted."""
    candidates = _top_candidates(group, ns, keep)
    order = candidates[np.lexsort((rows[candidates], -ns[candidates], group[candidates]))]
    ordered = group[order]
    rank = np.arange(len(order)) - np.searchsorted(ordered, ordered, side="left")
    picked = order[rank < keep]
    for g, n, r, a in zip(group[picked].tolist(), ns[picked].tolist(), rows[picked].tolist(),
                          table.records(rows[picked]), strict=True):
        recs[g].examples.append((-n, r, example_of(a, n)))


def _top_candidates(group: np.ndarray, ns: np.ndarray, keep: int) -> np.ndarray:
    """Positions (ascending) that hold every group's ``keep`` largest ``ns``: those at or
    above the group's ``keep``-th largest distinct value (all of a group with fewer distinct
    values), found with ``keep`` ``maximum.at`` passes instead of sorting every position."""
    if not len(group) or keep <= 0:
        return np.empty(0, dtype=np.int64)
    floor = np.iinfo(np.int64).min
    below = np.full(int(group.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    for _ in range(keep):
        largest = np.full(len(below), floor, dtype=np.int64)
        np.maximum.at(largest, group, np.where(ns < below[group], ns, floor))
        below = largest  # this pass's largest, excluded from the next
    return np.flatnonzero(ns >= below[group])


def _host_gaps(table: GapTable, timelines: list[DeviceTimeline], acc: dict[Key, Accumulator],
               examples: int, split: Split,
               phases: dict[int, DevicePhases] | None) -> None:
    """Add the parts of the gaps with host activity: group-bys over the part rows of
    ``table.host`` giving what adding the gaps one by one in time order gives."""
    parts = table.host.parts()
    if not len(parts.gap):
        return
    rows = table.host.rows[parts.gap]
    cats = np.array(CODES, dtype=object)[parts.code]
    keys = pd.DataFrame({"cat": cats, "site": part_sites(table, parts),
                         "key": _split_keys(table, rows, cats, split)})
    group = keys.groupby(["cat", "site", "key"], sort=False).ngroup().to_numpy()
    ns = parts.ns
    totals = _group_totals(group, rows, parts.order, ns, _impacts(table, parts, timelines))
    recs: list[Accumulator] = []
    for (cat, site, key), (first_row, first_part, idle, impact, gaps) in zip(
            keys.drop_duplicates().itertuples(index=False, name=None), totals, strict=True):
        rec = acc.get((cat, site, key))
        if rec is None:
            rec = acc[(cat, site, key)] = Accumulator((first_row, first_part))
        rec.first = min(rec.first, (first_row, first_part))
        rec.idle += idle
        rec.impact += impact
        rec.gaps += gaps
        recs.append(rec)
    for g, gtid in _distinct_pairs(group, table.launch_values("global_tid", rows)):
        recs[g].threads.add(gtid)
    if phases is not None:
        phase = phase_codes(phases, table.device[rows], table.g0[rows], table.g1[rows])
        for (g, ph), total in _sums_by(group, phase, ns, rows)[0].items():
            recs[g].phase[PHASES[ph]] = recs[g].phase.get(PHASES[ph], 0) + total
    _host_nvtx(table, parts, group, recs)
    _host_kernels(table, parts, rows, group, recs)
    _host_calls(table, parts, group, recs)
    _add_examples(table, rows, group, ns, recs, examples)


def split_frame(split: Split) -> pd.DataFrame:
    """Split keys as a table ``device_id, g0, category, key`` (a mapping ``(device_id,
    gap start, category) -> key`` is turned into one)."""
    if isinstance(split, pd.DataFrame):
        return split
    return as_frame(pd.DataFrame([(*where, key) for where, key in split.items()],
                                 columns=["device_id", "g0", "category", "key"]))


def _split_keys(table: GapTable, rows: np.ndarray, cats: np.ndarray, split: Split
                ) -> np.ndarray:
    """The split key of each part (``split`` by (device, gap start, category); "" without)."""
    given = split_frame(split)
    if given.empty:
        return np.full(len(rows), "", dtype=object)
    given = given.drop_duplicates(["device_id", "g0", "category"])
    wanted = pd.DataFrame({"device_id": table.device[rows], "g0": table.g0[rows],
                           "category": cats})
    found = wanted.merge(given, how="left", on=["device_id", "g0", "category"], sort=False)
    return np.asarray(found["key"].fillna("").to_numpy(dtype=object))


def _group_totals(group: np.ndarray, rows: np.ndarray, order: np.ndarray, ns: np.ndarray,
                  impact: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Per group (0, 1, ...): its first (row, part order), idle ns, impact ns, part count."""
    first = np.lexsort((order, rows, group))
    first = first[np.r_[True, group[first][1:] != group[first][:-1]]]
    count = np.bincount(group)
    idle, gained = (pd.Series(v).groupby(group).sum().to_numpy() for v in (ns, impact))
    return list(zip(rows[first].tolist(), order[first].tolist(), idle.tolist(),
                    gained.tolist(), count.tolist(), strict=True))


def _impacts(table: GapTable, parts: PartRows, timelines: list[DeviceTimeline]) -> np.ndarray:
    """Recoverable ns of each part: its ns, or for ``host-cpu``/``host-wait`` its share of the
    gap's budget (``budget * ns // host ns``, exact)."""
    host = np.isin(parts.code, [CODE[c] for c in HOST])
    host_ns = np.zeros(len(table.host), dtype=np.int64)
    np.add.at(host_ns, parts.gap[host], parts.ns[host])
    budget = _host_budgets(table, host_ns, timelines)
    impact = np.array(parts.ns, dtype=np.int64)
    num, den = budget[parts.gap[host]], host_ns[parts.gap[host]]
    if len(num) and int(num.max()) * int(parts.ns[host].max()) < 2**63:
        impact[host] = num * parts.ns[host] // den
    elif len(num):  # Python integers: no overflow
        impact[host] = (num.astype(object) * parts.ns[host].astype(object) // den).astype(
            np.int64)
    return impact


def _host_budgets(table: GapTable, host_ns: np.ndarray, timelines: list[DeviceTimeline]
                  ) -> np.ndarray:
    """Per gap with host activity: the recoverable part of its host-side ns ``host_ns``
    (``host-cpu`` + ``host-wait``), ``min(host ns, GPU busy time since the previous gap with
    host-side time on its device, or since the device's first operation)``: one prefix-sum
    search per device for all its gaps."""
    rows = table.host.rows
    budget = np.zeros(len(rows), dtype=np.int64)
    device, g0, g1 = table.device[rows], table.g0[rows], table.g1[rows]
    for tl in timelines:
        mine = np.flatnonzero((host_ns > 0) & (device == tl.device_id))
        if len(mine):
            since = np.concatenate(([tl.span_start_ns], g1[mine][:-1]))
            busy = intervals.Coverage(tl.busy).within(since, g0[mine])
            budget[mine] = np.minimum(host_ns[mine], busy)
    return budget


def _host_nvtx(table: GapTable, parts: PartRows, group: np.ndarray,
               recs: list[Accumulator]) -> None:
    """NVTX totals of the host parts: the category's ``where`` range, else the launch's,
    else ``(none)``; per name its ns and first row."""
    label = nvtx_label(table, parts, np.ones(len(group), dtype=bool))
    label[missing(label)] = "(none)"
    rows = table.host.rows[parts.gap]
    frame = pd.DataFrame({"g": group, "name": label, "ns": parts.ns, "row": rows})
    sums = frame.groupby(["g", "name"], sort=False).agg(ns=("ns", "sum"), row=("row", "min"))
    for (g, name), total, first in zip(sums.index, sums["ns"].tolist(), sums["row"].tolist(),
                                       strict=True):
        entry = recs[g].nvtx.setdefault(str(name), [0, first])
        entry[0] += total
        entry[1] = min(entry[1], first)


def _host_kernels(table: GapTable, parts: PartRows, rows: np.ndarray, group: np.ndarray,
                  recs: list[Accumulator]) -> None:
    """Launch-overhead ns per next operation's name, names in order of their first gap."""
    mine = np.flatnonzero(parts.code == CODE["launch-overhead"])
    if not len(mine):
        return
    names = np.array(table.names, dtype=object)[table.op_name[rows[mine]]]
    frame = pd.DataFrame({"g": group[mine], "name": names, "ns": parts.ns[mine],
                          "row": rows[mine]})
    sums = frame.groupby(["g", "name"], sort=False).agg(ns=("ns", "sum"), row=("row", "min"))
    sums = sums.sort_values("row", kind="stable")
    for (g, name), total in zip(sums.index, sums["ns"].tolist(), strict=True):
        recs[g].kernels[name] = recs[g].kernels.get(name, 0) + total


def _host_calls(table: GapTable, parts: PartRows, group: np.ndarray,
                recs: list[Accumulator]) -> None:
    """Per part, its gap's listed calls of its category: count and ns per call name, names in
    order of first encounter (gap order, then list order)."""
    host = table.host
    if not len(host.call_gap):
        return
    part, found = positions_of(gap_code_key(parts.gap, parts.code),
                               gap_code_key(host.call_gap, host.call_code))
    hit = np.flatnonzero(found)
    frame = pd.DataFrame({
        "g": group[part[hit]], "name": texts(host.call_name[hit]),
        "ns": host.call_end[hit] - host.call_start[hit], "pos": hit})
    sums = frame.groupby(["g", "name"], sort=False).agg(
        count=("ns", "size"), ns=("ns", "sum"), pos=("pos", "min"))
    sums = sums.sort_values("pos", kind="stable")
    for (g, name), count, total in zip(sums.index, sums["count"].tolist(), sums["ns"].tolist(),
                                       strict=True):
        call = recs[g].calls.setdefault(name, [0, 0])
        call[0] += count
        call[1] += total
