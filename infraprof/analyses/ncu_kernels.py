"""Why each profiled kernel is slow (ncu), and how much GPU time that costs (nsys).

Per profiled launch, :func:`diagnose` gives:

* **bound class** with ncu's ``SOLBottleneck`` thresholds: SM % or Memory % of peak ≥ 80 →
  the higher one is the bound; both < 60 → ``latency`` (too little work in flight); otherwise
  a gap ≥ 10 points → the higher one, else ``balanced``. ``unknown`` without SOL metrics;
* **stall breakdown**: warps stalled per issued instruction for each reason, as a share of the
  CPI (warp cycles per issued instruction) — ncu ``CPIStall``'s ``stall / CPI`` — or, with only
  PC sampling, the share of samples; ``selected`` (issuing) is not a stall and never "top";
* **roofline** (fp32 and fp64, whichever executes more FLOP first): arithmetic intensity =
  achieved FLOP/s ÷ DRAM bytes/s, ridge = peak FLOP/s ÷ DRAM peak B/s, roof at the kernel's
  intensity = min(peak, intensity × DRAM peak);
* **occupancy**: theoretical occupancy and its limiter, achieved vs theoretical.

**Headroom** (fraction of the kernel's time a fix could recover, capped at
:data:`MAX_HEADROOM`): the largest ncu *estimated speedup* of the launch's rules when the
report has them (ncu ≥ 2023.x); otherwise a throughput model: the busiest unit could run at
:data:`SOL_ACHIEVABLE_PCT` of peak, so ``headroom = 1 − max(SM %, Memory %) / 90`` (for a
memory-bound kernel that is ``1 − Memory SOL / 90``; Memory SOL rather than DRAM % so L1/L2
bound kernels are not credited with DRAM headroom). For a latency-bound kernel with stall data
it is further capped by the top stall's share of the CPI (the ``CPIStall`` estimate).

:func:`join_ncu` weights each diagnosis by the kernel's GPU time on the nsys timeline (all
launches of the matched name): ``impact_ns = nsys GPU time × headroom``, ``share = impact_ns /
total nsys kernel time``. Names are matched by demangled name, then short name (grid/block
dims break ties), then — for OpenACC kernels named ``<func>_<line>_gpu`` — by function with the
nearest line number (a rebuilt binary shifts line numbers). ncu durations are not used for
time: ncu replays kernels with locked clocks and flushed caches.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from infraprof.analyses.findings import Finding, impact_finding, info_finding
from infraprof.analyses.ncu_match import NsysKernel, match_kernel, nsys_kernels
from infraprof.analyses.summary import device_busy
from infraprof.model import Trace
from infraprof.model.kernel_metrics import KernelMetrics

SOL_HIGH_PCT: Final = 80.0
SOL_LOW_PCT: Final = 60.0
SOL_GAP_PCT: Final = 10.0
SOL_ACHIEVABLE_PCT: Final = 90.0
MAX_HEADROOM: Final = 0.9
HOT_SHARE: Final = 0.05
"""An nsys kernel name with at least this share of kernel time is "hot"."""
TOP_STALLS: Final = 3

STALL_EXPLANATIONS: Final[dict[str, str]] = {
    "long_scoreboard": "waiting for data from global/local memory (an L1TEX miss to L2/DRAM)",
    "short_scoreboard": "waiting for shared-memory or special-math (MUFU) results",
    "mio_throttle": "memory I/O queue full (shared memory, special math, dynamic branches)",
    "lg_throttle": "local/global memory instruction queue full: too many small memory ops",
    "math_pipe_throttle": "a math pipe is saturated and cannot take more instructions",
    "tex_throttle": "texture/surface pipe queue full",
    "barrier": "waiting at a block-wide barrier (__syncthreads) for slower warps",
    "membar": "waiting on a memory fence",
    "branch_resolving": "waiting for a branch target or divergence to resolve",
    "dispatch_stall": "the dispatcher could not issue the selected instruction",
    "drain": "waiting for outstanding memory writes to drain at warp exit",
    "imc_miss": "immediate-constant cache miss",
    "no_instruction": "next instruction not fetched yet (instruction-cache miss, after a jump)",
    "not_selected": "eligible but another warp issued (enough parallelism; not a problem)",
    "selected": "issuing an instruction (not a stall)",
    "sleeping": "warp sleeping (nanosleep, yield)",
    "wait": "fixed-latency dependency between back-to-back instructions",
    "misc": "miscellaneous hardware reasons",
    "gmma": "waiting on a warpgroup MMA (Hopper tensor cores)",
}
STALL_FIXES: Final[dict[str, str]] = {
    "long_scoreboard": "coalesce global accesses, reuse data via shared memory/L1, and keep more "
                       "warps or independent loads in flight to hide memory latency",
    "short_scoreboard": "reduce shared-memory bank conflicts and special-math calls",
    "mio_throttle": "use wider (vectorized) shared-memory accesses and fewer special-math ops",
    "lg_throttle": "combine small global/local accesses into wider ones; avoid register spills",
    "math_pipe_throttle": "move work to a less busy pipe (e.g. fp32 instead of fp64)",
    "barrier": "balance work between warps of a block or sync less often",
    "branch_resolving": "reduce divergent branches",
    "no_instruction": "reduce code size in the hot loop (less unrolling/inlining)",
    "wait": "increase instruction-level parallelism (independent instructions per thread)",
}
BOUND_FIXES: Final[dict[str, str]] = {
    "memory": "Reduce memory traffic (coalescing, caching in shared memory, fusing kernels).",
    "compute": "Reduce instruction count or use faster pipes (FMA, lower precision, tensor "
               "cores).",
    "latency": "Expose more parallelism: more resident warps and more independent work per "
               "thread.",
    "balanced": "Compute and memory are both busy: reduce work and traffic together.",
    "unknown": "Profile with ncu's SpeedOfLight section to classify the bottleneck.",
}
NO_STALLS_NOTE: Final = (
    "no warp-stall metrics in this report (basic/default section set or a details-page CSV); "
    "re-profile with `--set full` (or `--section WarpStateStats`) to see why warps wait"
)


@dataclass(frozen=True)
class StallShare:
    """One stall reason of one launch; ``share`` is of the CPI (or of PC samples)."""

    reason: str
    value: float
    share: float
    explanation: str


@dataclass(frozen=True)
class Roofline:
    """Roofline placement against the DRAM roof for one precision (FLOP/s, bytes/s)."""

    precision: str
    arithmetic_intensity: float
    achieved_flop_per_s: float
    peak_flop_per_s: float
    dram_peak_bytes_per_s: float
    ridge_point: float
    roof_flop_per_s: float
    side: str

    @property
    def pct_of_roof(self) -> float:
        return 100 * self.achieved_flop_per_s / self.roof_flop_per_s if self.roof_flop_per_s \
            else math.nan


@dataclass(frozen=True)
class KernelDiagnosis:
    """Everything :func:`diagnose` concludes about one profiled launch."""

    launch_id: int
    name: str
    short_name: str
    duration_ns: float
    bound: str
    bound_detail: str
    stalls: tuple[StallShare, ...]
    stalls_note: str | None
    stall_basis: str | None
    rooflines: tuple[Roofline, ...]
    occupancy: str | None
    headroom: float
    headroom_source: str
    metrics: dict[str, Any]

    @property
    def top_stalls(self) -> tuple[StallShare, ...]:
        return tuple(s for s in self.stalls if s.reason != "selected")[:TOP_STALLS]


def _f(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    v = float(value)
    return None if math.isnan(v) else v


def classify_bound(sm_pct: float | None, mem_pct: float | None,
                   waves: float | None = None) -> tuple[str, str]:
    """``(bound, why)`` from SM and Memory SOL % with ncu's SOLBottleneck thresholds."""
    if sm_pct is None or mem_pct is None:
        return "unknown", "no Speed Of Light metrics"
    high = "compute" if sm_pct >= mem_pct else "memory"
    if max(sm_pct, mem_pct) >= SOL_HIGH_PCT:
        return high, f"{high} throughput ≥ {SOL_HIGH_PCT:.0f} % of peak"
    if max(sm_pct, mem_pct) < SOL_LOW_PCT:
        why = "compute and memory both < 60 % of peak"
        if waves is not None and waves < 1:
            why += f" (small grid: {waves:.2f} waves)"
        return "latency", why
    if abs(sm_pct - mem_pct) >= SOL_GAP_PCT:
        return high, f"{high} throughput ≥ 60 % and ≥ 10 points above the other"
    return "balanced", "compute and memory within 10 points, ≥ 60 % of peak"


def stall_breakdown(stalls: pd.DataFrame, cpi: float | None) -> tuple[tuple[StallShare, ...],
                                                                       str | None]:
    """Stall shares of one launch's rows of the stalls table, largest first, and the basis
    (``cpi``, ``ratio-sum`` when the CPI is missing, ``pc-samples``), or ``((), None)``."""
    ratios = stalls.dropna(subset=["ratio_per_issue_active"])
    if len(ratios):
        values = dict(zip(ratios["reason"], ratios["ratio_per_issue_active"], strict=True))
        basis = "cpi" if cpi else "ratio-sum"
        total = cpi if cpi else sum(values.values())
    else:
        samples = stalls.dropna(subset=["pcsamp_count"])
        if not len(samples):
            return (), None
        values = dict(zip(samples["reason"], samples["pcsamp_count"], strict=True))
        basis, total = "pc-samples", sum(values.values())
    if not total:
        return (), None
    shares = [
        StallShare(str(r), float(v), float(v) / total, STALL_EXPLANATIONS.get(str(r), str(r)))
        for r, v in values.items()
    ]
    shares.sort(key=lambda s: (-s.value, s.reason))
    return tuple(shares), basis


def rooflines(row: pd.Series) -> tuple[Roofline, ...]:
    """Roofline placements of one kernel-metrics row (empty without roofline metrics)."""
    dram = _f(row["dram_throughput_bytes_per_s"])
    bw_peak = _f(row["dram_peak_bytes_per_s"])
    out = []
    for prec in ("fp32", "fp64"):
        achieved, peak = _f(row[f"{prec}_flop_per_s"]), _f(row[f"{prec}_peak_flop_per_s"])
        if not achieved or not peak or not dram or not bw_peak:
            continue
        ai = achieved / dram
        ridge = peak / bw_peak
        out.append(Roofline(prec, ai, achieved, peak, bw_peak, ridge, min(peak, ai * bw_peak),
                            "memory" if ai < ridge else "compute"))
    out.sort(key=lambda r: -r.achieved_flop_per_s)
    return tuple(out)


def occupancy_text(row: pd.Series) -> str | None:
    """``theoretical 50 % (limited by registers), achieved 23 %`` or ``None``."""
    theo, ach = _f(row["theoretical_occupancy_pct"]), _f(row["achieved_occupancy_pct"])
    parts = []
    if theo is not None:
        text = f"theoretical {theo:.0f} %"
        if theo < 100 and row["occupancy_limiter"]:
            text += f" (limited by {row['occupancy_limiter']})"
        parts.append(text)
    if ach is not None:
        text = f"achieved {ach:.0f} %"
        if theo is not None and theo - ach > SOL_GAP_PCT:
            text += " (warps finish unevenly or the grid is too small)"
        parts.append(text)
    return ", ".join(parts) or None


def _headroom(bound: str, sm: float | None, mem: float | None,
              top: StallShare | None, rules: pd.DataFrame) -> tuple[float, str]:
    speedups = rules["estimated_speedup_pct"].dropna()
    if len(speedups):
        return min(MAX_HEADROOM, float(speedups.max()) / 100), "ncu estimated speedup"
    if sm is None or mem is None:
        return 0.0, "no Speed Of Light metrics"
    h = max(0.0, 1 - max(sm, mem) / SOL_ACHIEVABLE_PCT)
    source = f"1 − max(SM, Memory SOL) / {SOL_ACHIEVABLE_PCT:.0f} %"
    if bound == "latency" and top is not None and top.share < h:
        h, source = top.share, f"top stall {top.reason} share of CPI"
    return min(MAX_HEADROOM, h), source


def _metrics_dict(row: pd.Series) -> dict[str, Any]:
    keys = ("duration_ns", "sm_sol_pct", "mem_sol_pct", "dram_pct_of_peak",
            "dram_throughput_bytes_per_s", "l1_hit_pct", "l2_hit_pct",
            "achieved_occupancy_pct", "theoretical_occupancy_pct", "issue_active_pct", "cpi",
            "fp32_pipe_pct", "fp64_pipe_pct", "tensor_pipe_pct", "registers_per_thread")
    out: dict[str, Any] = {k: _f(row[k]) for k in keys}
    out["device_name"] = row["device_name"]
    return out


def diagnose(metrics: KernelMetrics) -> list[KernelDiagnosis]:
    """One :class:`KernelDiagnosis` per profiled launch, in launch order."""
    out = []
    for _, row in metrics.kernels.iterrows():
        lid = int(row["launch_id"])
        sm, mem = _f(row["sm_sol_pct"]), _f(row["mem_sol_pct"])
        bound, why = classify_bound(sm, mem, _f(row["waves_per_sm"]))
        stalls, basis = stall_breakdown(metrics.stalls[metrics.stalls["launch_id"] == lid],
                                        _f(row["cpi"]))
        diag_top = next((s for s in stalls if s.reason != "selected"), None)
        rules = metrics.rules[metrics.rules["launch_id"] == lid]
        headroom, source = _headroom(bound, sm, mem, diag_top, rules)
        out.append(KernelDiagnosis(
            launch_id=lid, name=str(row["name"]), short_name=str(row["short_name"]),
            duration_ns=_f(row["duration_ns"]) or math.nan, bound=bound, bound_detail=why,
            stalls=stalls, stalls_note=None if stalls else NO_STALLS_NOTE, stall_basis=basis,
            rooflines=rooflines(row), occupancy=occupancy_text(row), headroom=headroom,
            headroom_source=source, metrics=_metrics_dict(row),
        ))
    return out


# --- join onto the nsys timeline ------------------------------------------------------------

def _norm_gpu(name: str) -> str:
    return re.sub(r"^nvidia\s+", "", name.strip().lower())


def _gpu_caveat(trace: Trace, metrics: KernelMetrics) -> Finding | None:
    used = trace.used_gpus()
    nsys_names = sorted({str(n) for n in used["name"].dropna()})
    ncu_names = metrics.device_names
    if ncu_names and nsys_names:
        if {_norm_gpu(n) for n in ncu_names} <= {_norm_gpu(n) for n in nsys_names}:
            return None
        what, ncu_dev, nsys_dev = "GPU", ", ".join(ncu_names), ", ".join(nsys_names)
    else:
        ncu_cc = {str(c) for c in metrics.kernels["cc"].dropna()}
        nsys_cc = {f"{int(a)}.{int(b)}" for a, b in zip(used["compute_major"],
                                                           used["compute_minor"], strict=True)
                   if a is not pd.NA and b is not pd.NA}
        if not ncu_cc or not nsys_cc or ncu_cc <= nsys_cc:
            return None
        what, ncu_dev, nsys_dev = "compute capability", ", ".join(sorted(ncu_cc)), \
            ", ".join(sorted(nsys_cc))
    return info_finding(
        id="kernel.gpu_mismatch", category="kernel",
        title=f"ncu profiled on {ncu_dev} but the nsys trace ran on {nsys_dev}: kernel metrics "
              "may not transfer",
        evidence={"ncu_devices": ncu_dev, "nsys_devices": nsys_dev, "compared": what},
        recommendation="Profile with ncu on the same GPU model as the timeline before acting on "
                       "bound classes and stall shares.",
    )


def _title(d: KernelDiagnosis, gpu_share: float) -> str:
    m = d.metrics
    if d.bound == "memory":
        dram, mem = m["dram_pct_of_peak"], m["mem_sol_pct"]
        detail = f"DRAM {dram:.0f} % of peak" if dram is not None else f"memory {mem:.0f} % of peak"
    elif d.bound == "compute":
        detail = f"SM {m['sm_sol_pct']:.0f} % of peak"
    elif d.bound == "unknown":
        detail = "no SOL metrics"
    else:
        detail = f"SM {m['sm_sol_pct']:.0f} %, memory {m['mem_sol_pct']:.0f} % of peak"
    bound = d.bound if d.bound in ("balanced", "unknown") else f"{d.bound}-bound"
    title = f"kernel {d.short_name}: {100 * gpu_share:.0f} % of GPU time, {bound} ({detail})"
    if d.top_stalls:
        s = d.top_stalls[0]
        of = "of CPI" if d.stall_basis != "pc-samples" else "of stall samples"
        title += f", top stall {s.reason} {100 * s.share:.0f} % {of}"
    return title


def _evidence(d: KernelDiagnosis, k: NsysKernel, method: str, launch_ids: list[int],
              gpu_share: float) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "nsys_kernel": k.name, "nsys_gpu_time_ns": k.total_ns, "nsys_launches": k.count,
        "gpu_time_share": round(gpu_share, 6), "match": method, "ncu_launch_ids": launch_ids,
        "bound": d.bound, "bound_detail": d.bound_detail, "headroom": round(d.headroom, 4),
        "headroom_source": d.headroom_source, "ncu": d.metrics,
        "stalls": [{"reason": s.reason, "share": round(s.share, 4), "value": s.value,
                    "explanation": s.explanation} for s in d.top_stalls],
        "occupancy": d.occupancy,
    }
    if d.stalls_note:
        ev["stalls_note"] = d.stalls_note
    if d.rooflines:
        r = d.rooflines[0]
        ev["roofline"] = {"precision": r.precision, "arithmetic_intensity": r.arithmetic_intensity,
                          "ridge_point": r.ridge_point, "side": r.side,
                          "achieved_flop_per_s": r.achieved_flop_per_s,
                          "pct_of_roof": r.pct_of_roof}
    return ev


def _recommendation(d: KernelDiagnosis) -> str:
    text = BOUND_FIXES[d.bound]
    if d.top_stalls and d.top_stalls[0].reason in STALL_FIXES:
        s = d.top_stalls[0]
        text += f" Top stall {s.reason} ({s.explanation}): {STALL_FIXES[s.reason]}."
    if d.occupancy and "limited by" in d.occupancy and d.bound == "latency":
        text += f" Occupancy: {d.occupancy}."
    return text


def join_ncu(trace: Trace, metrics: KernelMetrics, active_span_ns: int | None = None,
             summary: pd.DataFrame | None = None) -> list[Finding]:
    """Findings (category ``kernel``) for the ncu-profiled kernels, weighted by nsys time.

    One ``kernel.<bound>_bound``/``kernel.balanced``/``kernel.unknown`` finding per matched
    nsys kernel name (ncu launches of one name are represented by the longest one), plus
    ``info`` findings with ``impact_ns = 0``: ``kernel.not_in_timeline`` (profiled, absent in
    nsys), ``kernel.not_profiled`` (nsys kernels with ≥ :data:`HOT_SHARE` of kernel time that
    ncu did not profile) and ``kernel.gpu_mismatch``. ``active_span_ns``: the share
    denominator (default: the devices' active spans, summed); ``summary``: the trace's
    :func:`~infraprof.analyses.summary.kernel_summary` when already computed.
    """
    nsys = nsys_kernels(trace, summary)
    total = sum(k.total_ns for k in nsys)
    active = (active_span_ns if active_span_ns is not None
              else sum(d.span_ns for d in device_busy(trace)))
    diags = {d.launch_id: d for d in diagnose(metrics)}
    groups: dict[str, tuple[NsysKernel, str, list[KernelDiagnosis]]] = {}
    findings: list[Finding] = []
    for _, row in metrics.kernels.iterrows():
        d = diags[int(row["launch_id"])]
        hit = match_kernel(row, nsys)
        if hit is None:
            findings.append(info_finding(
                id="kernel.not_in_timeline", category="kernel",
                title=f"kernel {d.short_name}: profiled by ncu but absent from the nsys timeline",
                evidence={"ncu_kernel": d.name, "ncu_launch_id": d.launch_id},
                recommendation="Check that ncu and nsys profiled the same program and build.",
            ))
            continue
        k, method = hit
        groups.setdefault(k.name, (k, method, []))[2].append(d)
    for k, method, ds in groups.values():
        d = max(ds, key=lambda x: (x.duration_ns if not math.isnan(x.duration_ns) else -1))
        gpu_share = k.total_ns / total if total else 0.0
        impact = round(k.total_ns * d.headroom)
        suffix = "balanced" if d.bound in ("balanced", "unknown") else f"{d.bound}_bound"
        findings.append(impact_finding(
            f"kernel.{suffix}" if d.bound != "unknown" else "kernel.unknown", "kernel",
            _title(d, gpu_share), impact, active,
            _evidence(d, k, method, [x.launch_id for x in ds], gpu_share), _recommendation(d)))
    for k in nsys:
        if k.name in groups or not total or k.total_ns / total < HOT_SHARE:
            continue
        findings.append(info_finding(
            id="kernel.not_profiled", category="kernel",
            title=f"kernel {k.short_name}: {100 * k.total_ns / total:.0f} % of GPU time but not "
                  "profiled by ncu",
            evidence={"nsys_kernel": k.name, "nsys_gpu_time_ns": k.total_ns,
                      "nsys_launches": k.count},
            recommendation=capture_command(k.short_name, trace.meta.capture_command),
        ))
    caveat = _gpu_caveat(trace, metrics)
    if caveat is not None:
        findings.append(caveat)
    return findings


def capture_command(short_name: str, program: str | None, launch_count: int = 1) -> str:
    """``infraprof capture --ncu --kernel REGEX --launch-count N -- <cmd>`` for one kernel.

    The regex anchors the kernel's function name (ncu's default ``--kernel-name-base
    function``); one launch is enough for a kernel whose launches behave alike, and keeps the
    replay cost (tens of passes per launch with ``--set full``) small.
    """
    regex = "^" + re.escape(short_name) + "$"
    return (f"infraprof capture --ncu --kernel {shlex.quote(regex)} --launch-count "
            f"{launch_count} -- {program or '<cmd>'}")
