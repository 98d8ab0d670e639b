"""The columnar gap table and its vectorised consumers agree with the per-gap algorithm.

The reference below is the per-gap aggregation gap findings used before the table existed (one
accumulator per (category, site, key), every gap walked in time order); the NVTX name of each
gap is checked against the scalar 64-range look-back. Random layouts of kernels on several
devices, streams and threads, with missing, early (dependency) and late (host) launch calls,
blocking syncs and NVTX ranges.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from infraprof import intervals
from infraprof import tables as table_schema
from infraprof.analyses import python_frames
from infraprof.analyses.attribution import (
    _ThreadIndex,
    attribute_table,
    idle_breakdown,
)
from infraprof.analyses.findings import impact_finding
from infraprof.analyses.gap_findings import GapFindingParams, keyed_gap_findings
from infraprof.analyses.gap_table import CATEGORIES, Deviations, GapAttribution, GapTable
from infraprof.analyses.host_frames import windows_counts
from infraprof.analyses.phases import PHASES, device_phases, phase_of_gap
from infraprof.analyses.sites import RECOMMENDATIONS, WHAT, idle_text, site_of
from infraprof.analyses.timeline import device_timelines
from infraprof.model import Trace, TraceMeta
from infraprof.tables import decode_tid

Op = tuple[int, int, int, int, int, int, int, int]


def _innermost_nvtx(entry: dict[str, Any], t: int) -> str | None:
    """Reference: the latest-starting range among the 64 starting at or before ``t`` that is
    still open at ``t`` (ties: the later one in start order); None without one."""
    if "nv_s" not in entry:
        return None
    starts, ends = entry["nv_s"].tolist(), entry["nv_e"].tolist()
    hi = sum(1 for s in starts if s <= t)
    for i in range(hi - 1, max(0, hi - 64) - 1, -1):
        if ends[i] > t:
            return str(entry["nv_name"][i])
    return None


def _gtid(thread: int) -> int:
    return (1 << 48) | (7 << 24) | (100 + thread)


def _trace(ops: list[Op], ranges: list[tuple[int, int, int, int]]) -> Trace:
    """ops: (idle before it on its device, dur, launch lead, launch dur, device, stream, thread,
    flags: 1 = no launch call, 2 = a sync after the launch); ranges: (start, dur, thread,
    name)."""
    k, a, n = [], [], []
    device_end = [0, 0]
    for i, (idle, dur, lead, adur, device, stream, thread, flags) in enumerate(ops):
        s = device_end[device] + idle
        device_end[device] = s + dur
        gtid = _gtid(thread)
        k.append({"start_ns": s, "end_ns": s + dur, "device_id": device, "context_id": 1,
                  "stream_id": stream, "correlation_id": i + 1, "global_pid": gtid & ~0xFFFFFF,
                  "pid": 7, "name": f"k{i % 3}", "short_name": f"k{i % 3}", "grid_x": 1,
                  "grid_y": 1, "grid_z": 1, "block_x": 1, "block_y": 1, "block_z": 1,
                  "registers_per_thread": 8, "static_smem_bytes": 0, "dynamic_smem_bytes": 0})
        if flags & 1:
            continue
        a.append({"start_ns": s - lead, "end_ns": s - lead + adur, "global_tid": gtid,
                  "pid": 7, "tid": 100 + thread, "correlation_id": i + 1,
                  "name": "cudaLaunchKernel", "api": "runtime"})
        if flags & 2:
            a.append({"start_ns": s - lead + adur, "end_ns": s + dur + 50, "global_tid": gtid,
                      "pid": 7, "tid": 100 + thread, "correlation_id": 10_000 + i,
                      "name": "cudaStreamSynchronize", "api": "runtime"})
    for s, dur, thread, name in ranges:
        n.append({"start_ns": s, "end_ns": s + dur, "global_tid": _gtid(thread), "pid": 7,
                  "tid": 100 + thread, "end_global_tid": None, "name": f"step {name}",
                  "domain": "", "event_type": 59, "kind": "range"})
    return Trace(meta=TraceMeta(source="synthetic", sqlite_path=""),
                 kernels=table_schema.conform(pd.DataFrame(k), table_schema.KERNELS),
                 api_calls=table_schema.conform(pd.DataFrame(a, columns=list(
                     table_schema.API_CALLS)), table_schema.API_CALLS),
                 nvtx=table_schema.conform(pd.DataFrame(n, columns=list(table_schema.NVTX)),
                                           table_schema.NVTX))


def _reference_findings(atts: list[GapAttribution], trace: Trace, split: dict[Any, str],
                        phases: dict[int, Any], p: GapFindingParams) -> list[Any]:
    """Gap findings the per-gap way (the aggregation before the gap table)."""
    timelines = device_timelines(trace)
    by_dev = {t.device_id: t for t in timelines}
    active = sum(t.span_ns for t in timelines) or 1
    acc: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(
        lambda: {"idle": 0, "impact": 0, "gaps": 0, "examples": [], "threads": set(),
                 "nvtx": defaultdict(int), "calls": defaultdict(lambda: [0, 0]),
                 "kernels": defaultdict(int), "phase": defaultdict(int)})
    last_host: dict[int, int] = {}
    for a in sorted(atts, key=lambda x: x.start_ns):
        host_ns = a.parts.get("host-cpu", 0) + a.parts.get("host-wait", 0)
        budget = 0
        if host_ns:
            prev = last_host.get(a.device_id, by_dev[a.device_id].span_start_ns)
            budget = min(host_ns, intervals.overlap_total(by_dev[a.device_id].busy, prev,
                                                          a.start_ns))
            last_host[a.device_id] = a.end_ns
        for cat, ns in a.parts.items():
            rec = acc[(cat, site_of(a, cat), split.get((a.device_id, a.start_ns, cat), ""))]
            rec["idle"] += ns
            rec["phase"][phase_of_gap(phases, a.device_id, a.start_ns, a.end_ns)] += ns
            rec["impact"] += budget * ns // host_ns if cat in ("host-cpu", "host-wait") else ns
            rec["gaps"] += 1
            if a.global_tid is not None:
                rec["threads"].add(a.global_tid)
            rec["nvtx"][a.where.get(cat) or a.nvtx or "(none)"] += ns
            if cat == "launch-overhead":
                rec["kernels"][a.next_op["name"]] += ns
            for c in a.calls:
                if c["category"] == cat:
                    rec["calls"][c["name"]][0] += 1
                    rec["calls"][c["name"]][1] += int(c["dur_ns"])
            if len(rec["examples"]) < p.examples or ns > rec["examples"][-1]["attributed_ns"]:
                rec["examples"].append({
                    "device_id": a.device_id, "gap_start_ns": a.start_ns,
                    "gap_end_ns": a.end_ns, "attributed_ns": ns,
                    "next_op": a.next_op["name"], "launch_call": a.launch and a.launch["name"],
                    "drain_call": a.drain and a.drain["name"], "nvtx": a.nvtx,
                    "calls": a.calls[:3]})
                rec["examples"].sort(key=lambda e: -e["attributed_ns"])
                del rec["examples"][p.examples:]
    out = []
    for (cat, site, key), rec in acc.items():
        if rec["impact"] <= 0:
            continue
        threads = sorted(rec["threads"])
        calls = sorted(rec["calls"].items(), key=lambda kv: -kv[1][1])[: p.max_sites]
        nvtx = sorted(rec["nvtx"].items(), key=lambda kv: -kv[1])[: p.max_sites]
        finding = impact_finding(
            f"gap.{cat}", cat,
            f"{site}: GPU idle {idle_text(rec['idle'])} in {rec['gaps']} gaps; {WHAT[cat]}",
            int(rec["impact"]), active,
            {"site": site, "gpu_idle_ns": int(rec["idle"]), "gaps": int(rec["gaps"]),
             "threads": [{"global_tid": t, "tid": int(decode_tid(t)), "name": None}
                         for t in threads[:5]],
             "nvtx_ranges": [{"name": n, "idle_ns": int(v)} for n, v in nvtx],
             "calls_in_gaps": [{"name": n, "count": c, "in_gap_call_ns": d}
                               for n, (c, d) in calls],
             "examples": rec["examples"],
             "next_ops": [{"name": n, "idle_ns": int(v)} for n, v in sorted(
                 rec["kernels"].items(), key=lambda kv: -kv[1])[: p.max_sites]],
             "not_recoverable_ns": int(rec["idle"] - rec["impact"])},
            RECOMMENDATIONS[cat])
        phase = max(PHASES, key=lambda ph: (rec["phase"].get(ph, 0), ph == "steady"))
        out.append(((finding, phase), key))
    return out


_OP = st.tuples(st.integers(0, 200_000), st.integers(1, 20_000), st.integers(0, 120_000),
                st.integers(1, 5_000), st.integers(0, 1), st.integers(0, 2), st.integers(0, 2),
                st.integers(0, 3))
_RANGE = st.tuples(st.integers(-20_000, 3_000_000), st.integers(1, 1_000_000), st.integers(0, 2),
                   st.integers(0, 4))


@given(st.lists(_OP, min_size=1, max_size=60), st.lists(_RANGE, max_size=12),
       st.booleans(), st.integers(1, 4))
@settings(max_examples=80, deadline=None)
def test_gap_table_agrees_with_the_per_gap_algorithm(
        ops: list[Op], ranges: list[tuple[int, int, int, int]], split_host: bool,
        examples: int) -> None:
    trace = _trace(ops, ranges)
    timelines = device_timelines(trace)
    table = attribute_table(trace, timelines)
    atts = table.records()
    assert len(table) == sum(len(t.gaps) for t in timelines)
    index = _ThreadIndex(trace)
    breakdown = dict.fromkeys(CATEGORIES, 0)
    for a in atts:
        assert sum(a.parts.values()) == a.dur_ns
        assert all(v > 0 for v in a.parts.values())
        for cat, ns in a.parts.items():
            breakdown[cat] += ns
        if a.launch is None:
            assert a.parts == {"unknown": a.dur_ns} and a.nvtx is None
            continue
        at = min(int(a.launch["start_ns"]), a.end_ns)
        assert a.nvtx == _innermost_nvtx(index.get(int(a.global_tid or 0)), at)
        if a.launch["end_ns"] <= a.start_ns:
            assert a.parts == {"dependency": a.dur_ns}
    assert idle_breakdown(table) == breakdown
    split = {(a.device_id, a.start_ns, cat): f"key{a.start_ns % 2}" for a in atts
             for cat in a.parts if split_host and cat in ("host-cpu", "host-wait", "sync")}
    phases = {ph.device_id: ph for ph in device_phases(trace, timelines)}
    params = GapFindingParams(examples=examples)
    got = keyed_gap_findings(table, timelines, {}, params, split, phases)
    want = _reference_findings(atts, trace, split, phases, params)
    assert [((f.id, f.title, f.impact_ns, f.evidence, f.phase), k) for f, k in got] == [
        ((f.id, f.title, f.impact_ns, f.evidence, ph), k) for (f, ph), k in want]


@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), max_size=40),
       st.lists(st.integers(0, 60), max_size=30))
def test_deviations_give_back_every_value(pairs: list[tuple[int, bool]],
                                          picks: list[int]) -> None:
    """A column held as its deviations from a default gives back its values at any rows
    (repeated, unordered), whether few rows deviate (positions kept) or most (dense)."""
    default = np.array([d for d, _ in pairs], dtype=np.int64)
    values = np.array([d + 7 if off else d for d, off in pairs], dtype=np.int64)
    held = Deviations.of(values, default)
    assert (held.rows is None) == (3 * int((values != default).sum()) > 2 * len(values))
    rows = np.array([p % len(pairs) for p in picks] if pairs else [], dtype=np.int64)
    assert held.at(rows, default[rows]).tolist() == values[rows].tolist()


@given(st.lists(_OP, min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_launch_fields_are_the_calls_of_the_next_operations(ops: list[Op]) -> None:
    """The launch fields read through ``GapTable.call`` are those of the first call (in
    table order) with the next operation's correlation id (one process), 0 without one;
    gathering at rows equals indexing the whole column."""
    trace = _trace(ops, [])
    table = attribute_table(trace, device_timelines(trace))
    calls = trace.api_calls
    first = calls.drop_duplicates("correlation_id")
    by_corr = {int(c): (int(s), int(e), int(g)) for c, s, e, g in zip(
        first["correlation_id"], first["start_ns"], first["end_ns"], first["global_tid"],
        strict=True)}
    want = [by_corr.get(int(corr), (0, 0, 0)) for corr in table.op_corr.tolist()]
    got = list(zip(table.api_start.tolist(), table.api_end.tolist(), table.gtid.tolist(),
                   strict=True))
    assert got == want
    assert table.has_launch.tolist() == [int(c) in by_corr for c in table.op_corr.tolist()]
    rows = np.arange(len(table))[::2]
    for column, whole in (("start_ns", table.api_start), ("end_ns", table.api_end),
                          ("global_tid", table.gtid)):
        assert table.launch_values(column, rows).tolist() == whole[rows].tolist()
    assert table.call.dtype == np.int32 or not len(table)


@given(st.lists(_OP, min_size=1, max_size=40), st.integers(0, 100_000))
@settings(max_examples=40, deadline=None)
def test_idle_collapsed_windows_are_the_launching_threads_gaps(
        ops: list[Op], floor: int) -> None:
    """:func:`idle_collapsed` asks, per launching thread (by tid), for the union of its gaps
    at least ``floor`` long — as the per-gap loop did."""
    trace = _trace(ops, [])
    table = attribute_table(trace, device_timelines(trace))
    want: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a in table.records():
        if a.global_tid is not None and a.dur_ns >= floor:
            want[int(decode_tid(a.global_tid))].append((a.start_ns, a.end_ns))
    expected = [(tid, list(zip(merged.starts.tolist(), merged.ends.tolist(), strict=True)))
                for tid, windows in sorted(want.items())
                for merged in [intervals.union([w[0] for w in windows],
                                               [w[1] for w in windows])]]
    asked: list[tuple[int, list[tuple[int, int]]]] = []

    def record(samples: Any, frames: Any, tid: int, windows: Any) -> str:
        asked.append((tid, list(windows)))
        return ""

    pyspy = SimpleNamespace(samples=pd.DataFrame(), frames=pd.DataFrame(),
                            alignment=SimpleNamespace(error_ns=0), notes=())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(python_frames, "collapsed_in_windows", record)
        python_frames.idle_collapsed(trace, pyspy, table, min_window_ns=floor)  # type: ignore[arg-type]
    assert asked == expected


# py-spy stacks: stack 3 has stack 1's frames (one stack for the pools), stack 5 none
_FRAMES = pd.DataFrame([(sid, depth, f"f{fid}", "m.py", fid)
                        for sid, fids in ((0, (0,)), (1, (0, 1)), (2, (2,)), (3, (0, 1)),
                                          (4, (3, 0)))
                        for depth, fid in enumerate(fids)],
                       columns=["stack_id", "depth", "function", "file", "line"])


def _samples(table: GapTable, draws: list[tuple[int, int, int]]) -> pd.DataFrame:
    """py-spy samples (``draws``: gap pick, position in per mille, stack id): mostly inside
    the gaps with host activity on their launching thread, some just outside them."""
    rows = table.host_rows()
    out = []
    for pick, permille, sid in draws:
        if not len(rows):
            break
        row = int(rows[pick % len(rows)])
        g0, g1 = int(table.g0[row]), int(table.g1[row])
        at = g0 + (g1 - g0) * (permille - 100) // 1000  # -10 % .. +90 % of the gap
        out.append((at, int(decode_tid(int(table.gtid[row]))), sid))
    return pd.DataFrame(out, columns=["start_ns", "tid", "stack_id"]).astype("int64")


def _reference_pool_job(pools: Any, a: GapAttribution, cat: str, counts: Counter[Any]) -> None:
    """One gap's category added to its (category, site) pool, as the per-gap loop did."""
    ns = a.parts[cat]
    key = (cat, site_of(a, cat))
    if a.end_ns - a.start_ns < pools.error_ns:
        pools.refused[key] += 1
        return
    n = sum(counts.values())
    if n == 0:
        return
    pools.attributed[key] += ns
    for stack, c in counts.items():
        pools.weights[key][stack] += round(ns * c / n)
        pools.samples[key][stack] += c


@given(st.lists(_OP, min_size=1, max_size=40), st.lists(_RANGE, max_size=6),
       st.integers(0, 50_000),
       st.lists(st.tuples(st.integers(0, 50), st.integers(0, 1000), st.integers(0, 5)),
                max_size=120))
@example(ops=[(0, 1, 0, 1, 0, 0, 0, 0)] * 10 + [(1, 1, 0, 1, 0, 0, 0, 0)] * 3
         + [(50_000, 1, 0, 1, 0, 0, 0, 0)] + [(1, 1, 0, 1, 0, 0, 0, 0)] * 2, ranges=[],
         error_ns=0, draws=[(3, 100, 1), (21, 100, 3), (4, 500, 5), (5, 900, 2), (3, 300, 4)])
@example(ops=[(0, 1, 0, 1, 0, 0, 0, 0)] * 10 + [(1, 1, 0, 1, 0, 0, 0, 0)] * 3
         + [(50_000, 1, 0, 1, 0, 0, 0, 0)] + [(1, 1, 0, 1, 0, 0, 0, 0)] * 2, ranges=[],
         error_ns=30_000, draws=[(i, 37 * i % 1000, i % 6) for i in range(40)])
@settings(max_examples=150, deadline=None)
def test_frame_pools_match_the_per_gap_pooling(
        ops: list[Op], ranges: list[tuple[int, int, int, int]], error_ns: int,
        draws: list[tuple[int, int, int]]) -> None:
    """py-spy pools from the host columns equal pooling every gap one at a time with
    ``windows_counts`` per window (same keys, weights, samples and insertion order), with
    equal stacks under two ids and a stack id without frames."""
    trace = _trace(ops, ranges)
    table = attribute_table(trace, device_timelines(trace))
    samples = _samples(table, draws)
    pyspy = SimpleNamespace(samples=samples, frames=_FRAMES,
                            alignment=SimpleNamespace(error_ns=error_ns), notes=())
    want = python_frames.FramePools(error_ns, defaultdict(Counter), defaultdict(Counter),
                                    Counter(), Counter())
    by_tid: dict[int, list[GapAttribution]] = defaultdict(list)
    for a in table.records():
        if a.global_tid is not None:
            by_tid[int(decode_tid(a.global_tid))].append(a)
    for tid, atts in by_tid.items():
        jobs = [(a, cat) for a in atts for cat in python_frames.HOST if a.parts.get(cat, 0) > 0]
        flat = [(i, w) for i, (a, cat) in enumerate(jobs)
                for w in (a.segments.get(cat) or [(a.start_ns, a.end_ns)])]
        per_job: list[Counter[Any]] = [Counter() for _ in jobs]
        found_all = windows_counts(samples, _FRAMES, tid, [w for _, w in flat], 0)
        for (i, _), found in zip(flat, found_all, strict=True):
            per_job[i].update(found or Counter())
        for (a, cat), counts in zip(jobs, per_job, strict=True):
            _reference_pool_job(want, a, cat, counts)
    got = python_frames.frame_pools(table, pyspy)  # type: ignore[arg-type]
    event(f"stacks pooled: {min(sum(len(c) for c in want.weights.values()), 3)}, "
          f"refused: {bool(want.refused)}")
    assert got is not None
    for name in ("weights", "samples"):
        assert [(k, list(c.items())) for k, c in getattr(got, name).items()] == [
            (k, list(c.items())) for k, c in getattr(want, name).items()]
    assert list(got.attributed.items()) == list(want.attributed.items())
    assert list(got.refused.items()) == list(want.refused.items())
