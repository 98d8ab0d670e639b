"""Kernel classes from kernel names alone, per device; layout-conversion and no-tensor-core
findings; whether the trace is GPU-bound.

:data:`KERNEL_PATTERNS` is the one pattern table: ``(class, group, regex)`` rows searched in
the demangled kernel name, case-insensitively, **first match wins** (so communication and
attention kernels are claimed before the generic GEMM, layout and elementwise rows). Extend it by
adding a row in the right place; ``tests/test_kernel_classes.py`` holds a named example per row.
Names that match no row are ``other``.

Findings (``docs/findings.md``):

* ``kernel.layout_conversion``: kernels converting memory layouts (``nchwToNhwc``,
  ``nhwcToNchw``, transposes, permutes) and copy/cast kernels (PyTorch ``direct_copy_kernel``,
  ``copy_kernel``). **Impact**: the time of the layout rows (groups in
  :data:`RECOVERABLE_LAYOUT_GROUPS`) — a consistent memory format (channels-last end to end)
  removes them; copy/cast time is listed in the evidence but not counted (it may be a dtype
  cast that the model needs).
* ``kernel.no_tensor_cores``: FP32 GEMM/convolution kernels (no tensor-core marker in the
  name) on a device of compute capability ≥ 7.0 (``TARGET_INFO_GPU``), and FP64 ones on
  devices with FP64 tensor cores (8.0, 9.0+); matrix-vector kernels (``gemv``, memory-bound:
  tensor cores do not help them) are classified but not counted. **Impact**: their time ×
  ``(1 − 1 / tensor_core_speedup)`` (default speedup 2: a conservative end-to-end figure; TF32/
  FP16 tensor-core peak is 8–16× FP32 on A100, but memory-bound parts do not speed up).

GPU-bound (table ``gpu_bound``): the devices' busy time is at least ``gpu_bound_share`` (90 %)
of their summed active spans; the report then leads with the kernel-level findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.findings import Finding, impact_finding
from infraprof.analyses.group_stats import counts_by_code
from infraprof.analyses.names import text_codes
from infraprof.model import Trace
from infraprof.tables import (
    as_frame,
    column_view,
    fill_text,
    rows_by_value,
    text_category,
)

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

OTHER: Final = "other"

KERNEL_PATTERNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("communication", "nccl", r"\bnccl|\bmsccl|\brccl"),
    ("memset_memcpy", "memset/memcpy", r"mem(?:set|cpy)"),
    ("softmax_attention", "attention", r"flash|fmha|attention|\bmha_|sdpa"),
    ("softmax_attention", "softmax", r"softmax"),
    ("gemm_tensor_core", "xmma/hmma", r"xmma|hmma|wgmma|imma|dmma"),
    ("gemm_tensor_core", "tensorop", r"tensorop|cutlass\w*_tensor|tensor\d+x\d+x\d+"),
    ("gemm_tensor_core", "mma shape", r"s16816|h16816|i16832|[hsi]1688|[hsi]884|1688gemm|884gemm"),
    ("gemm_tensor_core", "gemmk1", r"gemmk1"),
    ("gemm_tensor_core", "sm80/sm90", r"\bsm(?:80|86|89|90)a?_"),
    ("gemm_no_tensor_core", "gemv", r"gemv"),
    ("gemm_no_tensor_core", "fp64", r"[dz]gemm|double\w*gemm"),
    ("gemm_no_tensor_core", "fp32", r"implicit_convolve_sgemm|[sc]gemm|gemmSN"),
    ("gemm_no_tensor_core", "fp32 conv", r"convolve\w*_float|conv\w*_f32_|float\w*_conv"),
    ("layout_conversion", "nchw<->nhwc", r"nchwtonhwc|nhwctonchw|nchw2nhwc|nhwc2nchw"),
    ("layout_conversion", "transpose/permute", r"transpose|permute"),
    ("layout_conversion", "copy/cast", r"copy_kernel|direct_copy"),
    ("normalization", "norm", r"(?:batch|layer|group|instance|rms)_?norm|\bbn_(?:fw|bw)|welford"),
    ("reduction", "reduce", r"reduc|\bscan|argmax|argmin|\bsum_kernel|topk"),
    ("elementwise", "elementwise", r"elementwise|vectorized|unrolled|pointwise|multi_tensor_apply"
                                   r"|foreach|functor"),
)
CLASSES: Final[tuple[str, ...]] = (*dict.fromkeys(c for c, _, _ in KERNEL_PATTERNS), OTHER)
RECOVERABLE_LAYOUT_GROUPS: Final = frozenset({"nchw<->nhwc", "transpose/permute"})
_COMPILED: Final = tuple((c, g, re.compile(p, re.IGNORECASE)) for c, g, p in KERNEL_PATTERNS)


@dataclass(frozen=True)
class KernelClassParams:
    """``gpu_bound_share``: busy share of the active span at or above which a trace is
    GPU-bound (0.90); ``layout_min_share`` / ``no_tensor_core_min_share``: share of kernel time
    below which those findings stay silent (0.01 / 0.01); ``tensor_core_speedup``: assumed
    speedup of FP32 GEMM/conv time on tensor cores (2.0)."""

    gpu_bound_share: float = 0.90
    layout_min_share: float = 0.01
    no_tensor_core_min_share: float = 0.01
    tensor_core_speedup: float = 2.0


def classify_name(name: str) -> tuple[str, str]:
    """``(class, group)`` of one kernel name (first matching row of the table)."""
    for cls, group, pattern in _COMPILED:
        if pattern.search(name):
            return cls, group
    return OTHER, OTHER


def classify_kernels(names: pd.Series) -> pd.DataFrame:
    """``class`` and ``group`` of every kernel name, aligned with ``names``, as Categoricals
    with sorted texts (:func:`~infraprof.tables.text_category`: a byte or two per kernel, and
    a comparison with a class is one of codes). Each distinct name is classified once; rows
    map to names by integer codes (:mod:`~infraprof.analyses.names`)."""
    codes, distinct = text_codes(fill_text(names, ""))
    found = [classify_name(str(n)) for n in distinct] if len(names) else []
    columns = {column: text_category(codes, [f[i] for f in found], names.index)
               for i, column in enumerate(("class", "group"))}
    return as_frame(pd.DataFrame(columns, index=names.index))


def classified_kernels(trace: Trace) -> pd.DataFrame:
    """``trace.kernels``' ``start_ns, end_ns, device_id, stream_id, pid, correlation_id, name``
    plus ``dur_ns, class, group``."""
    k = column_view(trace.kernels, ["start_ns", "end_ns", "device_id", "stream_id", "pid",
                                    "correlation_id", "name"])
    out = k.assign(dur_ns=(k["end_ns"] - k["start_ns"]).astype("int64"))
    return as_frame(pd.concat([out, classify_kernels(k["name"])], axis=1))


def per_device_classes(kernels: pd.DataFrame) -> list[dict[str, Any]]:
    """Per device (ascending id): kernel time (sum of durations) and count per class present,
    largest first (equal sums: in :data:`CLASSES` order). Sums over the class codes
    (``add.at``, exact int64), not a group-by that copies each device's rows."""
    classes = kernels["class"]
    codes = classes.cat.codes.to_numpy()
    names = [str(c) for c in classes.cat.categories]
    durations = kernels["dur_ns"].to_numpy(dtype=np.int64)
    out = []
    for device, rows in rows_by_value(kernels["device_id"].to_numpy()):
        dur, code = (durations, codes) if rows is None else (durations[rows], codes[rows])
        total, named = int(dur.sum()), code >= 0
        if not named.all():
            dur, code = dur[named], code[named]
        sums = np.zeros(len(names), dtype=np.int64)
        np.add.at(sums, code, dur)
        counts = counts_by_code(code, len(names))
        present = sorted(np.flatnonzero(counts).tolist(),
                         key=lambda c: (-int(sums[c]), CLASSES.index(names[c])))
        out.append({"device_id": device, "kernel_ns": total,
                    "kernels": len(durations) if rows is None else len(rows),
                    "classes": [{"class": names[c], "count": int(counts[c]),
                                 "total_ns": int(sums[c]),
                                 "share": round(int(sums[c]) / total, 6) if total else 0.0}
                                for c in present]})
    return out


def _top_kernels(frame: pd.DataFrame, top: int = 5) -> list[dict[str, Any]]:
    g = frame.groupby("name")["dur_ns"].agg(["sum", "count"]).sort_values("sum", ascending=False)
    return [{"name": str(n), "count": int(r["count"]), "total_ns": int(r["sum"])}
            for n, r in g.head(top).iterrows()]


def layout_finding(kernels: pd.DataFrame, active_span_ns: int, min_share: float
                   ) -> Finding | None:
    """``kernel.layout_conversion`` (module docstring), or None below ``min_share``."""
    layout = kernels[kernels["class"] == "layout_conversion"]
    total = int(kernels["dur_ns"].sum())
    recoverable = layout[layout["group"].isin(RECOVERABLE_LAYOUT_GROUPS)]
    impact = int(recoverable["dur_ns"].sum())
    if not total or impact / total < min_share:
        return None
    groups = layout.groupby("group")["dur_ns"].agg(["sum", "count"])
    share = impact / total
    return impact_finding(
        "kernel.layout_conversion", "kernel",
        f"Layout conversion kernels take {100 * share:.1f} % of GPU kernel time "
        f"({impact / 1e6:.1f} ms in {len(recoverable)} launches)",
        impact, active_span_ns,
        {"layout_ns": impact, "launches": len(recoverable), "kernel_ns": total,
         "share_of_kernel_time": round(share, 6),
         "groups": [{"group": str(g), "count": int(r["count"]), "total_ns": int(r["sum"]),
                     "counted": str(g) in RECOVERABLE_LAYOUT_GROUPS}
                    for g, r in groups.sort_values("sum", ascending=False).iterrows()],
         "per_device": [{"device_id": int(str(d)), "layout_ns": int(v)} for d, v in
                        recoverable.groupby("device_id")["dur_ns"].sum().items()],
         "top_kernels": _top_kernels(recoverable)},
        "Keep one memory format end to end: channels-last (NHWC) model and inputs "
        "(model.to(memory_format=torch.channels_last), input.to(memory_format=...)) so cuDNN "
        "needs no NCHW<->NHWC conversions; avoid .contiguous()/.permute() in the step.")


def tensor_core_devices(trace: Trace, fp64: bool = False) -> set[int]:
    """Devices whose compute capability (``TARGET_INFO_GPU``) is 7.0 or more; with ``fp64``,
    those with FP64 tensor cores (8.0 and 9.0 or more)."""
    g = trace.gpus
    major = pd.to_numeric(g["compute_major"], errors="coerce").fillna(0).to_numpy()
    minor = pd.to_numeric(g["compute_minor"], errors="coerce").fillna(0).to_numpy()
    return {int(d) for d, a, b in zip(g["device_id"], major, minor, strict=True)
            if (a >= 9 or (a == 8 and b == 0)) or (not fp64 and a >= 7)}


def no_tensor_core_finding(trace: Trace, kernels: pd.DataFrame, active_span_ns: int,
                           params: KernelClassParams) -> Finding | None:
    """``kernel.no_tensor_cores`` (module docstring), or None."""
    capable = tensor_core_devices(trace)
    fp64_ok = kernels["device_id"].isin(list(tensor_core_devices(trace, fp64=True)))
    on_capable = kernels[kernels["device_id"].isin(list(capable))]
    counted = on_capable["group"].isin(["fp32", "fp32 conv"]) | (
        (on_capable["group"] == "fp64") & fp64_ok[on_capable.index])
    plain = on_capable[(on_capable["class"] == "gemm_no_tensor_core") & counted]
    total = int(on_capable["dur_ns"].sum())
    plain_ns = int(plain["dur_ns"].sum())
    if not total or plain_ns / total < params.no_tensor_core_min_share:
        return None
    speedup = max(params.tensor_core_speedup, 1.0)
    impact = int(plain_ns * (1 - 1 / speedup))
    gpus = trace.gpus[trace.gpus["device_id"].isin(list(capable))]
    return impact_finding(
        "kernel.no_tensor_cores", "kernel",
        f"GEMM/convolution kernels without tensor cores take "
        f"{100 * plain_ns / total:.1f} % of GPU kernel time ({plain_ns / 1e6:.1f} ms) on "
        f"tensor-core GPUs",
        impact, active_span_ns,
        {"no_tensor_core_ns": plain_ns, "launches": len(plain), "kernel_ns": total,
         "share_of_kernel_time": round(plain_ns / total, 6), "assumed_speedup": speedup,
         "compute_capability": sorted({f"{int(a)}.{int(b)}" for a, b in zip(
             gpus["compute_major"], gpus["compute_minor"].fillna(0), strict=True)}),
         "groups": [{"group": str(g), "total_ns": int(v)} for g, v in
                    plain.groupby("group")["dur_ns"].sum().sort_values(ascending=False).items()],
         "top_kernels": _top_kernels(plain)},
        "Use tensor cores: allow TF32 (torch.backends.cuda.matmul.allow_tf32 = True, "
        "torch.backends.cudnn.allow_tf32 = True) or train in BF16/FP16 with autocast (AMP); "
        "keep GEMM dimensions multiples of 8.")


def gpu_bound_table(ctx: AnalysisContext, share: float) -> dict[str, Any]:
    """``busy_share`` of all devices' active spans, the threshold and the verdict."""
    span = ctx.active_span_ns
    busy = sum(t.busy_ns for t in ctx.timelines)
    busy_share = busy / span if span else 0.0
    return {"gpu_bound": bool(span and busy_share >= share), "busy_share": round(busy_share, 6),
            "threshold": share, "busy_ns": int(busy), "active_span_ns": int(span)}


def _run(ctx: AnalysisContext, params: KernelClassParams) -> Output:
    kernels = ctx.classified_kernels
    findings = [f for f in (
        layout_finding(kernels, ctx.active_span_ns, params.layout_min_share),
        no_tensor_core_finding(ctx.trace, kernels, ctx.active_span_ns, params),
    ) if f is not None]
    return Output(findings=findings, tables={
        "per_device": per_device_classes(kernels),
        "gpu_bound": gpu_bound_table(ctx, params.gpu_bound_share)})


KERNEL_CLASSES = Analysis(
    id="kernel_classes",
    summary="kernel classes from names per device; layout conversions; FP32 GEMMs without "
            "tensor cores; GPU-bound verdict",
    finding_ids=("kernel.layout_conversion", "kernel.no_tensor_cores"),
    params_type=KernelClassParams, run=_run,
    settings=(
        Setting("gpu-bound-share", "gpu_bound_share", "share",
                "GPU busy share of the active span at or above which the trace is GPU-bound "
                "and kernel-level findings lead (90%)"),
    ))
