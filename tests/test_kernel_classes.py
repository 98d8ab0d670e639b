"""Kernel classes from names (issue 14): the pattern table, per-device totals, the
layout-conversion and no-tensor-core findings, and the GPU-bound headline and ranking."""

from __future__ import annotations

import pytest
from helpers_synthetic import trace

from infraprof.analyses.findings import Finding
from infraprof.analyses.kernel_classes import (
    CLASSES,
    KERNEL_PATTERNS,
    classify_name,
)
from infraprof.analyses.registry import build_config
from infraprof.ranking import Report, build_report, rank
from infraprof.render.markdown import render_markdown
from infraprof.render.terminal import render_terminal

# One real-world name per row of KERNEL_PATTERNS: adding a row without an example fails.
EXAMPLES: dict[tuple[str, str], list[str]] = {
    ("communication", "nccl"): ["ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm *, "
                                "unsigned long, ncclWork *)",
                                "ncclDevKernel_ReduceScatter_Sum_f32_RING_LL(ncclDevComm*)"],
    ("memset_memcpy", "memset/memcpy"): ["void cub::DeviceMemsetKernel<int>(int *, int)",
                                         "memcpy32_post"],
    ("softmax_attention", "attention"): ["void flash_fwd_kernel<Flash_fwd_kernel_traits<128>>()",
                                         "fmha_cutlassF_f16_aligned_64x64_rf_sm80"],
    ("softmax_attention", "softmax"): ["void at::native::cunn_SoftMaxForward<4, float>()"],
    ("gemm_tensor_core", "xmma/hmma"): [
        "sm80_xmma_fprop_implicit_gemm_indexed_f16f16_f16f32_f32_nhwckrsc_nhwc_tilesize128x128",
        "volta_fp16_hmma_gemm_64x64"],
    ("gemm_tensor_core", "tensorop"): ["cutlass::Kernel<cutlass_80_tensorop_bf16_s16816gemm>",
                                       "cutlass_tensorop_f16_gemm_256x128"],
    ("gemm_tensor_core", "mma shape"): ["volta_h884gemm_64x64_ldg8_nn",
                                        "turing_h1688gemm_128x128_ldg8_nn",
                                        "ampere_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_nn"],
    ("gemm_tensor_core", "gemmk1"): ["void gemmk1_kernel<int, float, 256, 5>()"],
    ("gemm_tensor_core", "sm80/sm90"): ["sm90_gemm_bf16bf16_f32_128x128_warpspecialized"],
    ("gemm_no_tensor_core", "gemv"): ["void gemv2T_kernel_val<int, int, double, double>()",
                                      "void gemvNSP_kernel<float, float, float, 1, 16>()"],
    ("gemm_no_tensor_core", "fp64"): ["volta_dgemm_128x64_nn", "void zgemm_kernel()"],
    ("gemm_no_tensor_core", "fp32"): ["implicit_convolve_sgemm<float, float, 1024, 5, 5>",
                                      "ampere_sgemm_128x64_nn"],
    ("gemm_no_tensor_core", "fp32 conv"): [
        "void convolveNd_dgrad_float_engine<float, (int)3, (int)128>(int, int)"],
    ("layout_conversion", "nchw<->nhwc"): [
        "void cudnn::ops::nchwToNhwcKernel<__half, __half, float>(cudnn::ops::nchw2nhwc_params)",
        "void cudnn::ops::nhwcToNchwKernel<float, float, float>()"],
    ("layout_conversion", "transpose/permute"): [
        "void dali::kernels::transpose_impl::TransposeDeinterleaveBatch<int>()",
        "void at::native::permute_kernel<float>()"],
    ("layout_conversion", "copy/cast"): [
        "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda()>()"],
    ("normalization", "norm"): ["void cudnn::bn_fw_tr_1C11_kernel_NCHW<float>()",
                                "void at::native::layer_norm_kernel<float>()",
                                "void at::native::batch_norm_collect_statistics_kernel<float>()"],
    ("reduction", "reduce"): ["void at::native::reduce_kernel<512, 1, at::native::ReduceOp>()",
                              "void cub::DeviceReduceKernel<float>()"],
    ("elementwise", "elementwise"): [
        "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>",
        "void multi_tensor_apply_kernel<TensorListMetadata<4>, AdamFunctor<float>>()"],
}


@pytest.mark.parametrize("row", KERNEL_PATTERNS, ids=lambda r: f"{r[0]}:{r[1]}")
def test_every_pattern_row_has_examples_it_claims(row: tuple[str, str, str]) -> None:
    cls, group, _ = row
    names = EXAMPLES.get((cls, group))
    assert names, f"add an example name for {cls}/{group} to EXAMPLES"
    for name in names:
        assert classify_name(name) == (cls, group), name


def test_unknown_names_are_other_and_classes_are_listed() -> None:
    assert classify_name("void dali::kernels::FlipKernel<5, 0, float>()") == ("other", "other")
    assert classify_name("") == ("other", "other")
    assert set(CLASSES) == {c for c, _, _ in KERNEL_PATTERNS} | {"other"}
    assert len(CLASSES) == 10


def _mixed_trace(compute_major: int = 8) -> Report:
    kernels = [
        (0, 500_000, "sm80_xmma_fprop_implicit_gemm_f16"),
        (600_000, 100_000, "void cudnn::ops::nchwToNhwcKernel<float>()"),
        (800_000, 50_000, "void at::native::permute_kernel<float>()"),
        (900_000, 40_000, "void at::native::elementwise_kernel<direct_copy_kernel_cuda>()"),
        (1_000_000, 200_000, "ampere_sgemm_128x64_nn"),
        (1_300_000, 10_000, "void at::native::vectorized_elementwise_kernel<4, add>"),
        (1_400_000, 10_000, "mystery"),
    ]
    return build_report(trace(kernels, compute_major=compute_major))


def test_per_device_classes_and_findings_on_a_synthetic_trace() -> None:
    report = _mixed_trace()
    data = report.to_dict()["kernel_classes"]
    assert data is not None
    (device,) = data["devices"]
    by_class = {c["class"]: (c["count"], c["total_ns"]) for c in device["classes"]}
    assert by_class == {"gemm_tensor_core": (1, 500_000), "layout_conversion": (3, 190_000),
                        "gemm_no_tensor_core": (1, 200_000), "elementwise": (1, 10_000),
                        "other": (1, 10_000)}
    assert device["kernel_ns"] == 910_000 and device["kernels"] == 7
    assert [c["total_ns"] for c in device["classes"]] == sorted(
        (c["total_ns"] for c in device["classes"]), reverse=True)
    found = {f.id: f for f in report.findings}
    layout = found["kernel.layout_conversion"]
    assert layout.impact_ns == 150_000  # nchwToNhwc + permute; the copy is listed, not counted
    assert {g["group"]: g["counted"] for g in layout.evidence["groups"]} == {
        "nchw<->nhwc": True, "transpose/permute": True, "copy/cast": False}
    no_tc = found["kernel.no_tensor_cores"]
    assert no_tc.evidence["no_tensor_core_ns"] == 200_000
    assert no_tc.impact_ns == 100_000  # speedup 2 assumed
    assert data["devices"][0]["communication"] is None


def test_gemv_and_fp64_without_fp64_tensor_cores_are_not_counted() -> None:
    kernels = [(0, 500_000, "void gemv2T_kernel_val<int, int, double>()"),
               (600_000, 300_000, "volta_dgemm_128x64_nn"), (1_000_000, 10_000, "other")]
    turing = build_report(trace(kernels, compute_major=7))
    assert "kernel.no_tensor_cores" not in {f.id for f in turing.findings}
    a100 = build_report(trace(kernels, compute_major=8))
    (found,) = [f for f in a100.findings if f.id == "kernel.no_tensor_cores"]
    assert found.evidence["no_tensor_core_ns"] == 300_000  # the DGEMM, not the GEMV


def test_no_tensor_core_finding_needs_a_tensor_core_gpu() -> None:
    report = _mixed_trace(compute_major=6)
    assert "kernel.no_tensor_cores" not in {f.id for f in report.findings}
    assert "kernel.layout_conversion" in {f.id for f in report.findings}


def test_gpu_bound_headline_and_ranking() -> None:
    report = _mixed_trace()
    bound = report.to_dict()["kernel_classes"]["gpu_bound"]
    assert bound["busy_ns"] == 910_000 and bound["active_span_ns"] == 1_410_000
    assert bound["gpu_bound"] is False  # 64.5 % busy
    assert "GPU-bound" not in render_terminal(report)
    dense = build_report(trace([(i * 1_000, 990, "sm80_xmma_gemm") for i in range(50)]
                               + [(50_000 + i * 1_000, 990, "nchwToNhwcKernel")
                                  for i in range(50)]))
    assert dense.to_dict()["kernel_classes"]["gpu_bound"]["gpu_bound"] is True
    assert "GPU-bound: the GPUs are busy" in render_terminal(dense)
    assert "GPU-bound: the GPUs are busy" in render_markdown(dense)
    assert dense.findings[0].id == "kernel.layout_conversion"
    assert "Kernel classes" in render_terminal(dense)


def _finding(fid: str, impact: int) -> Finding:
    return Finding(fid, "x", fid, "info", impact, 0.0)


def test_rank_puts_kernel_level_findings_first_only_when_gpu_bound() -> None:
    found = [_finding("gap.sync", 900), _finding("kernel.layout_conversion", 10),
             _finding("comm.exposed", 20), _finding("kernel.profile_suggestion", 0)]
    assert [f.id for f in rank(found)] == [
        "gap.sync", "comm.exposed", "kernel.layout_conversion", "kernel.profile_suggestion"]
    assert [f.id for f in rank(found, gpu_bound=True)] == [
        "comm.exposed", "kernel.layout_conversion", "gap.sync", "kernel.profile_suggestion"]


def test_disabling_the_analysis_gives_null_json() -> None:
    kernels = [(0, 1_000, "nchwToNhwcKernel"), (2_000, 1_000, "sgemm")]
    report = build_report(trace(kernels), build_config(cli={"disable": ["kernel_classes"]}))
    data = report.to_dict()
    assert data["kernel_classes"] is None
    assert not any(f["id"].startswith(("kernel.layout", "comm.")) for f in data["findings"])


@pytest.mark.parametrize("seed", range(6))
def test_per_device_classes_are_the_group_by(seed: int) -> None:
    """Per device, the class sums and counts from the class codes equal pandas' group-by
    of each device's rows (ordered by sum, then the class table's order; one device or
    several; classes absent on a device not listed)."""
    import numpy as np
    import pandas as pd

    from infraprof.analyses.kernel_classes import CLASSES, per_device_classes
    from infraprof.tables import text_category

    rng = np.random.default_rng(seed)
    n = 500
    used = list(CLASSES[:4])
    devices = rng.integers(0, 1 if seed % 2 else 3, n).astype(np.int8)
    kernels = pd.DataFrame({
        "device_id": devices, "dur_ns": rng.integers(0, 50, n) * (10 ** (seed % 3)),
        "class": text_category(rng.integers(0, len(used), n), used)})
    want = []
    for device, d in kernels.groupby("device_id", sort=True):
        total = int(d["dur_ns"].sum())
        g = d.groupby("class", observed=True)["dur_ns"].agg(["sum", "count"])
        g = g.assign(order=[CLASSES.index(str(c)) for c in g.index])
        g = g.sort_values(["sum", "order"], ascending=[False, True])
        want.append({"device_id": int(str(device)), "kernel_ns": total, "kernels": len(d),
                     "classes": [{"class": str(c), "count": int(r["count"]),
                                  "total_ns": int(r["sum"]),
                                  "share": round(int(r["sum"]) / total, 6) if total else 0.0}
                                 for c, r in g.iterrows()]})
    assert per_device_classes(kernels) == want
