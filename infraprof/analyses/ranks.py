"""Cross-rank results of a multi-rank job: the per-rank table, stragglers and imbalance.

This step runs after the per-report analyses, on :class:`RankFacts` (plain, picklable data
each rank's own analysis produced), so it works the same whether the reports were analysed in
this process, a local process pool or on a Dask cluster.

**Alignment.** Ranks are placed on one clock by their sessions' absolute start times
(``TraceMeta.session_start_utc_ns``; nsys aligns its session timeline to UTC): a rank's time
``t`` is ``session_start_utc_ns + t``. Ranks whose report has no start time are not aligned;
collectives are then not compared (stragglers need a common clock), imbalance still is.

**Imbalance** (``ranks.imbalance``). Per step ``k`` (the ``k``-th NVTX step instance of each
rank, :func:`~infraprof.analyses.phases.nvtx_steps`; one step = the whole run when a rank has
none), a rank's *compute* is the summed duration of its non-communication kernels that start
in ``[step k start, step k+1 start)`` (the last step: up to its end); a rank without kernels
counts the step's wall time (host compute). Over the ``K`` steps every rank has, the job
waits each step for its slowest rank, so ``impact = Σ_k (max_r c_rk − median_r c_rk)``: the
time balancing every rank to the median would recover. It fires when
``Σ_k max / Σ_k median − 1 ≥ min_imbalance`` (5 %). The named rank is the one that is slowest
in most steps; the title gives its compute over the median rank's.

**Stragglers** (``ranks.straggler``). Collective kernels (class ``communication`` of
:mod:`~infraprof.analyses.kernel_classes`, op parsed by ``COLLECTIVE_RE``) are matched across
ranks by op and order (NCCL issues a communicator's collectives in the same order on every
rank): the ``i``-th AllReduce of every rank is one collective. The rank whose kernel starts
last *arrives last*; the others' kernels start earlier and wait inside for it. A rank that
arrives last at more than half of at least :data:`MIN_COLLECTIVES` matched collectives, and
whose collective kernels are on average shorter than the other ranks' (they waited for it),
is a straggler. **Impact**: ``Σ (its start − the second-latest start)`` over the collectives it
arrives last at: had it arrived with the next-latest rank, each would have ended that much
earlier. **Why late**: its own timeline in the windows ``[second-latest start, its start]``:
its attributed idle gaps by cause (``gap.*`` causes of its own analysis) and, for the rest of
the window, ``compute`` (its GPU was busy: more work than the others).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from infraprof import intervals
from infraprof.analyses.findings import Finding, impact_finding

MIN_COLLECTIVES: Final = 3
CROSS_RANK_FINDING_IDS: Final = ("ranks.straggler", "ranks.imbalance")
BUSY: Final = "compute"


@dataclass(frozen=True)
class RankParams:
    """``min_imbalance``: ``Σ max / Σ median − 1`` below which ``ranks.imbalance`` stays
    silent (0.05)."""

    min_imbalance: float = 0.05


@dataclass(frozen=True)
class RankFacts:
    """One rank as its own analysis saw it; times in ns on its report's timeline.

    ``rank_hint``/``rank_source``: the rank its report states and how (``None``: ordered by
    :func:`assign_ranks`); ``steps``: ``(start_ns, end_ns, compute_ns)`` per step instance;
    ``collectives``: ``(op, start_ns, end_ns)`` per collective kernel, by start; ``gaps``:
    ``(start_ns, end_ns, cause)`` of its attributed idle gaps; ``top_finding``: its first
    ranked finding (``id``, ``title``, ``impact_ns``)."""

    input: str
    input_index: int
    pid: int | None
    rank_hint: int | None
    rank_source: str
    session_start_utc_ns: int | None
    span_start_ns: int
    span_end_ns: int
    gpu_busy_ns: int
    idle_by_cause_ns: dict[str, int]
    exposed_comm_ns: int
    steps: list[tuple[int, int, int]]
    collectives: list[tuple[str, int, int]]
    gaps: list[tuple[int, int, str]]
    top_finding: dict[str, Any] | None = None
    step_name: str | None = None


@dataclass(frozen=True)
class CrossRank:
    """The per-rank rows (by rank) and the cross-rank findings (by impact)."""

    ranks: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def assign_ranks(facts: Sequence[RankFacts]) -> list[tuple[int, str]]:
    """``(rank, source)`` per fact: the stated ranks when every unit states one and they are
    distinct; else the order of the inputs (then of the processes in a split report), said so."""
    hints = [f.rank_hint for f in facts]
    if all(h is not None for h in hints) and len(set(hints)) == len(hints):
        return [(int(f.rank_hint), f.rank_source) for f in facts]  # type: ignore[arg-type]
    order = sorted(range(len(facts)), key=lambda i: (facts[i].input_index, facts[i].pid or 0))
    split = len({f.input_index for f in facts}) < len(facts)
    out: list[tuple[int, str]] = [(0, "")] * len(facts)
    for rank, i in enumerate(order):
        f = facts[i]
        how = "process order (pid) in the report" if f.pid is not None and split else (
            "input order")
        conflict = " (stated ranks missing or repeated)" if f.rank_hint is not None else ""
        out[i] = (rank, how + conflict)
    return out


def _percentile(values: np.ndarray, q: float) -> int | None:
    return int(round(float(np.percentile(values, q)))) if len(values) else None


def _row(rank: int, source: str, f: RankFacts, offset: int | None) -> dict[str, Any]:
    span = f.span_end_ns - f.span_start_ns
    durations = np.array([e - s for s, e, _ in f.steps], dtype=np.int64)
    compute = sum(c for _, _, c in f.steps)
    return {
        "rank": rank, "rank_source": source, "input": f.input, "pid": f.pid,
        "session_start_utc_ns": f.session_start_utc_ns, "offset_ns": offset,
        "span_ns": span, "gpu_busy_ns": f.gpu_busy_ns,
        "busy_share": round(f.gpu_busy_ns / span, 6) if span > 0 else 0.0,
        "idle_by_cause_ns": dict(f.idle_by_cause_ns),
        "step_name": f.step_name, "steps": len(f.steps) if f.step_name else 0,
        "step_p50_ns": _percentile(durations, 50) if f.step_name else None,
        "step_p99_ns": _percentile(durations, 99) if f.step_name else None,
        "compute_ns": int(compute), "exposed_comm_ns": f.exposed_comm_ns,
        "collectives": len(f.collectives), "last_arrivals": 0,
        "top_finding": f.top_finding,
    }


def cross_rank(facts: Sequence[RankFacts], params: RankParams | None = None) -> CrossRank:
    """The per-rank table and the cross-rank findings (module docstring)."""
    params = params or RankParams()
    if not facts:
        return CrossRank()
    assigned = assign_ranks(facts)
    starts = [f.session_start_utc_ns for f in facts]
    aligned = all(s is not None for s in starts)
    base = min(s for s in starts if s is not None) if aligned else 0
    rows = [_row(r, src, f, (f.session_start_utc_ns or 0) - base if aligned else None)
            for (r, src), f in zip(assigned, facts, strict=True)]
    ranks = [r for r, _ in assigned]
    span = _job_span(facts, aligned)
    findings: list[Finding] = []
    if aligned and len(facts) >= 2:
        late, straggling = _stragglers(facts, ranks, span)
        for row, count in zip(rows, late, strict=True):
            row["last_arrivals"] = count
        findings += straggling
    if len(facts) >= 2:
        findings += _imbalance(facts, ranks, span, params)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["rank"])
    findings.sort(key=lambda x: (-x.impact_ns, x.id, x.title))
    return CrossRank([rows[i] for i in order], findings)


def _job_span(facts: Sequence[RankFacts], aligned: bool) -> int:
    """The job's wall span on the common clock (the longest rank span when not aligned)."""
    if not aligned:
        return max(f.span_end_ns - f.span_start_ns for f in facts)
    lo = min(int(f.session_start_utc_ns or 0) + f.span_start_ns for f in facts)
    hi = max(int(f.session_start_utc_ns or 0) + f.span_end_ns for f in facts)
    return hi - lo


def step_compute(facts: Sequence[RankFacts]) -> np.ndarray:
    """``(ranks, K)`` compute per aligned step (module docstring): the ``K`` steps every rank
    has when all ranks have steps of the same name, else one column of whole-run compute."""
    names = {f.step_name for f in facts}
    if len(names) == 1 and None not in names:
        count = min(len(f.steps) for f in facts)
        return np.array([[c for _, _, c in f.steps[:count]] for f in facts], dtype=np.int64)
    return np.array([[sum(c for _, _, c in f.steps)] for f in facts], dtype=np.int64)


def _imbalance(facts: Sequence[RankFacts], ranks: list[int], span: int,
               params: RankParams) -> list[Finding]:
    table = step_compute(facts)
    if table.shape[1] == 0:
        return []
    peak = table.max(axis=0)
    median = np.median(table, axis=0)
    if median.sum() <= 0:
        return []
    ratio = float(peak.sum() / median.sum())
    if ratio - 1 < params.min_imbalance:
        return []
    totals = table.sum(axis=1)
    worst = int(totals.argmax())
    slowest = int((table.argmax(axis=0) == worst).sum())
    median_total = float(np.median(totals))
    over = totals[worst] / median_total - 1 if median_total else 0.0
    what = (f"{table.shape[1]} NVTX steps" if table.shape[1] > 1 or facts[0].step_name
            else "the whole run")
    evidence = {
        "rank": ranks[worst], "input": facts[worst].input, "steps_compared": int(table.shape[1]),
        "slowest_in_steps": slowest, "max_over_median": round(ratio, 6),
        "compute_ns_by_rank": {str(ranks[i]): int(totals[i]) for i in range(len(facts))},
        "median_rank_compute_ns": int(round(median_total)),
    }
    title = (f"Rank {ranks[worst]} computes {over:.1%} more than the median rank over {what}; "
             f"the job waits for the slowest rank each step (slowest in {slowest} of "
             f"{table.shape[1]})")
    return [impact_finding(
        "ranks.imbalance", "ranks", title, int(round(float((peak - median).sum()))), span,
        evidence, "Balance the work across ranks (even data shards/sequence lengths, pipeline "
        "stage sizes); every other rank waits for the slowest at each step.")]


def _matched_collectives(facts: Sequence[RankFacts]) -> list[np.ndarray]:
    """Per op: ``(ranks, n, 2)`` absolute ``(start, end)`` of the first ``n`` collectives of
    that op on every rank."""
    ops = sorted(set.intersection(*({op for op, _, _ in f.collectives} for f in facts)))
    out = []
    for op in ops:
        per_rank = [np.array([(s, e) for o, s, e in f.collectives if o == op], dtype=np.int64)
                    + int(f.session_start_utc_ns or 0) for f in facts]
        n = min(len(p) for p in per_rank)
        if n:
            out.append(np.stack([p[:n] for p in per_rank]))
    return out


def _stragglers(facts: Sequence[RankFacts], ranks: list[int],
                span: int) -> tuple[list[int], list[Finding]]:
    matched = _matched_collectives(facts)
    last_counts = np.zeros(len(facts), dtype=np.int64)
    late_ns = np.zeros(len(facts), dtype=np.int64)
    windows: list[list[tuple[int, int]]] = [[] for _ in facts]
    total = 0
    for group in matched:
        starts = group[:, :, 0]
        order = np.argsort(starts, axis=0, kind="stable")
        last, second = order[-1], order[-2]
        cols = np.arange(starts.shape[1])
        lateness = starts[last, cols] - starts[second, cols]
        total += starts.shape[1]
        for col in np.nonzero(lateness > 0)[0]:
            rank_i = int(last[col])
            last_counts[rank_i] += 1
            late_ns[rank_i] += int(lateness[col])
            windows[rank_i].append((int(starts[second[col], col]), int(starts[last[col], col])))
    findings = []
    waits = np.concatenate([g[:, :, 1] - g[:, :, 0] for g in matched], axis=1) if matched else (
        np.zeros((len(facts), 0), dtype=np.int64))
    for i, f in enumerate(facts):
        others_wait_longer = waits.size and np.delete(waits, i, axis=0).mean() > waits[i].mean()
        if total >= MIN_COLLECTIVES and last_counts[i] * 2 > total and others_wait_longer:
            findings.append(_straggler_finding(f, ranks[i], int(last_counts[i]), total,
                                               int(late_ns[i]), windows[i], matched, i, span))
    return [int(c) for c in last_counts], findings


def late_causes(f: RankFacts, windows: Sequence[tuple[int, int]]) -> dict[str, int]:
    """Time in the union of ``windows`` (absolute ns) by what the rank was doing: its own
    attributed idle gaps by cause, the rest ``compute`` (its GPU busy), largest first."""
    if not windows:
        return {}
    local = np.array(windows, dtype=np.int64) - int(f.session_start_utc_ns or 0)
    merged = intervals.union(local[:, 0], local[:, 1])
    gaps = np.array([(s, e) for s, e, _ in f.gaps], dtype=np.int64).reshape(-1, 2)
    causes = np.array([c for _, _, c in f.gaps], dtype=object)
    overlap = intervals.overlap_each(merged, gaps[:, 0], gaps[:, 1])
    out: dict[str, int] = {}
    for cause in sorted(set(causes.tolist())):
        ns = int(overlap[causes == cause].sum())
        if ns:
            out[str(cause)] = ns
    busy = merged.total_ns - int(overlap.sum())
    if busy > 0:
        out[BUSY] = busy
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _straggler_finding(f: RankFacts, rank: int, count: int, total: int, late: int,
                       windows: list[tuple[int, int]], matched: list[np.ndarray], index: int,
                       span: int) -> Finding:
    causes = late_causes(f, windows)
    cause = next(iter(causes), BUSY)
    waits = np.concatenate([g[:, :, 1] - g[:, :, 0] for g in matched], axis=1)
    others = np.delete(waits, index, axis=0)
    evidence = {
        "rank": rank, "input": f.input, "last_arrivals": count, "collectives_matched": total,
        "late_ns": late, "late_by_cause_ns": causes,
        "mean_collective_ns": int(round(float(waits[index].mean()))),
        "others_mean_collective_ns": int(round(float(others.mean()))) if others.size else None,
        "own_top_finding": f.top_finding,
    }
    why = ("its GPU was busy computing (more work than the other ranks)" if cause == BUSY
           else f"its own timeline shows {cause} idle time")
    title = (f"Rank {rank} arrives last at {count} of {total} collectives; the others wait for "
             f"it inside their collective kernels: {why}")
    return impact_finding(
        "ranks.straggler", "ranks", title, late, span, evidence,
        f"Fix rank {rank}'s own delay first (see its report's `{cause}` time and top finding); "
        "every collective waits for the last rank to arrive.")
