"""The nsys SQLite reader on real exports: sanity numbers from ``../shared/traces/README.md``.

Row counts, sync classification, GPUs in use vs GPUs in the node, NVTX domains and registered
strings, API suffix stripping, odd kernel names, duplicated API rows, files without kernels /
CUDA / NVTX, and the cross-schema fixture (the same capture exported as schema 2.9.1 and
3.0.0 must read identically).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers_traces import TraceFiles, ro_connect
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.inputs import load_trace
from infraprof.model import Trace
from infraprof.ranking import build_report
from infraprof.readers.nsys_enums import strip_api_suffix
from infraprof.readers.nsys_sqlite import _domain_names

pytestmark = pytest.mark.realtraces

MW = "ncar-miniweather-nsys/"
SC22 = "nersc-sc22-dl/"
MW_BASELINE = MW + "miniweather_baseline.sqlite"
MW_BASELINE_300 = MW + "miniweather_baseline.nsys2022.4-export.sqlite"
SAXPY = "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite"
CUTLASS = "cutlass-a40-a100/report1.sqlite"
CUDAQ = "cudaq-vqe-nsys-pyspy/report1.sqlite"
POWER = "nsightful/power_iteration__baseline.sqlite"
UVMTORCH = "uvmtorch-no-cuda/report1.sqlite"
FINCH_GPU = "finch-bc-gpu/fvad2dgpu-gpu-grid100.nsys2022.4-export.sqlite.gz"
SC22_BASELINE = SC22 + "baseline.nsys2022.4-export.sqlite.gz"
SC22_4GPU = SC22 + "4gpu_baseline.nsys-rep.nsys2022.4-export.sqlite.gz"
SC22_DALI = SC22 + "dali.qdrep.nsys2022.4-export.sqlite.gz"

# traces/README.md section 1: kernels, API rows (after dropping duplicates), memcpy, memset,
# sync rows, OS runtime calls, distinct (devices, streams) of kernels. None = table absent.
ROW_COUNTS: dict[str, tuple[int, int, int, int, int, int, tuple[int, int]]] = {
    SAXPY: (5, 57, 15, 0, 0, 0, (1, 1)),
    MW_BASELINE: (2596, 11419, 1187, 4, 6669, 15357, (1, 1)),
    MW_BASELINE_300: (2596, 11419, 1187, 4, 6669, 15357, (1, 1)),
    MW + "miniweather_async.nsys2022.4-export.sqlite": (2596, 5360, 1187, 4, 899, 15140, (1, 2)),
    MW + "miniweather_async_collapsed.nsys2022.4-export.sqlite": (
        10372, 20952, 4653, 4, 3511, 15468, (1, 2)),
    "finch-bc-gpu/fvad2dgpu-cpu-grid100.nsys2022.4-export.sqlite.gz": (
        100, 736, 214, 0, 1018, 2242, (1, 1)),
    FINCH_GPU: (302, 668, 18, 1, 635, 2633, (1, 1)),
    SC22_BASELINE: (28674, 34810, 177, 1593, 178, 0, (1, 1)),
    SC22_4GPU: (22564, 39309, 2003, 1593, 2429, 0, (1, 3)),
    SC22_DALI: (17722, 24359, 4241, 986, 241, 0, (1, 3)),
    CUTLASS: (6, 21, 4, 0, 1, 1184, (1, 1)),
    CUDAQ: (0, 11, 0, 0, 0, 0, (0, 0)),
    POWER: (3689, 7417, 89, 0, 90, 1428, (1, 1)),
    UVMTORCH: (0, 2, 0, 0, 0, 37474, (0, 0)),
}


@pytest.fixture(scope="module")
def load(trace_files: TraceFiles) -> Callable[[str], Trace]:
    cache: dict[str, Trace] = {}

    def get(rel: str) -> Trace:
        if rel not in cache:
            cache[rel] = load_trace(trace_files.path(rel))
        return cache[rel]

    return get


def _sql(trace_files: TraceFiles, rel: str, query: str) -> list[tuple[Any, ...]]:
    with ro_connect(trace_files.path(rel)) as conn:
        return conn.execute(query).fetchall()


@pytest.mark.parametrize("rel", sorted(ROW_COUNTS))
def test_row_counts(rel: str, load: Callable[[str], Trace]) -> None:
    t = load(rel)
    kern, api, cpy, mset, sync, osrt, (devices, streams) = ROW_COUNTS[rel]
    assert (len(t.kernels), len(t.api_calls), len(t.memcpy), len(t.memset), len(t.syncs),
            len(t.osrt)) == (kern, api, cpy, mset, sync, osrt)
    assert (t.kernels["device_id"].nunique(), t.kernels["stream_id"].nunique()) == (
        devices, streams)
    # every kernel joins exactly one launching API call (correlation id within its process)
    if len(t.kernels):
        calls = t.api_calls[["pid", "correlation_id"]]
        joined = t.kernels.merge(calls, on=["pid", "correlation_id"], how="inner")
        assert len(joined) == len(t.kernels)
    assert t.has_gpu_activity == bool(kern or cpy or mset)


def test_miniweather_stream_syncs(load: Callable[[str], Trace]) -> None:
    t = load(MW_BASELINE)
    stream_sync = t.api_calls[t.api_calls["name"] == "cuStreamSynchronize"]
    assert len(stream_sync) == 5778
    assert int((stream_sync["end_ns"] - stream_sync["start_ns"]).sum()) == 69_935_166
    assert set(stream_sync["api"]) == {"driver"}
    # classified by the API call each row joins, not by the untrustworthy syncType labels
    assert t.syncs["kind"].value_counts().to_dict() == {"stream": 5778, "event": 591,
                                                        "context": 300}
    by_call = t.syncs.groupby("kind")["api_name"].agg(lambda s: set(s))
    assert by_call.to_dict() == {"stream": {"cuStreamSynchronize"},
                                 "event": {"cuEventSynchronize"}, "context": {"cuCtxSynchronize"}}
    assert t.syncs.groupby("kind")["sync_type"].agg(lambda s: set(s)).to_dict() == {
        "stream": {3}, "event": {2}, "context": {1}}


def test_syncs_without_api_call_fall_back_to_sync_type(load: Callable[[str], Trace]) -> None:
    t = load("finch-bc-gpu/fvad2dgpu-cpu-grid100.nsys2022.4-export.sqlite.gz")
    orphans = t.syncs[t.syncs["api_name"].isna()]
    assert len(orphans) == 615 and set(orphans["sync_type"]) == {3}
    assert set(orphans["kind"]) == {"stream"}
    joined = t.syncs[t.syncs["api_name"].notna()]
    assert joined["api_name"].value_counts().to_dict() == {"cuStreamSynchronize": 400,
                                                           "cuCtxSynchronize": 3}


def test_gpus_in_use_vs_gpus_in_node(load: Callable[[str], Trace]) -> None:
    sc22 = load(SC22_BASELINE)
    assert len(sc22.gpus) == 4
    assert set(sc22.gpus["name"]) == {"NVIDIA A100-SXM4-40GB"}
    assert sc22.used_gpus()["device_id"].tolist() == [0]
    report = build_report(sc22).to_dict()
    assert report["summary"]["gpus_in_node"] == 4
    assert [d["device_id"] for d in report["summary"]["devices"]] == [0]

    dali = load(SC22_DALI)
    assert dali.used_gpus()["name"].tolist() == ["A100-SXM4-40GB"]  # old driver: no "NVIDIA "


def test_gpu_id_is_not_cuda_ordinal(load: Callable[[str], Trace], trace_files: TraceFiles
                                    ) -> None:
    """cutlass: TARGET_INFO_GPU.id != cuDevice; activity deviceId is the id (as nsys joins)."""
    t = load(CUTLASS)
    assert len(t.gpus) == 4
    assert sorted(t.gpus["name"]) == ["NVIDIA A100-PCIE-40GB"] * 2 + ["NVIDIA A40"] * 2
    mapping = dict(_sql(trace_files, CUTLASS, "SELECT id, cuDevice FROM TARGET_INFO_GPU"))
    assert any(i != c for i, c in mapping.items())
    used = t.used_gpus()
    assert used["device_id"].tolist() == [0] and mapping[0] == 1
    assert used["bus_location"].tolist() == ["0000:c1:00.0"]
    assert used["name"].tolist() == ["NVIDIA A100-PCIE-40GB"]


def test_nvtx_domains(load: Callable[[str], Trace], trace_files: TraceFiles) -> None:
    t = load(SC22_4GPU)
    ranges = t.nvtx[t.nvtx["kind"] == "range"]
    assert len(ranges) == 10089
    by_domain = ranges["domain"].astype(object).fillna("<default>").value_counts().to_dict()
    assert by_domain == {"DALI": 7257, "NCCL": 1416, "<default>": 1416}
    # three domains are created (cuBLAS, DALI, NCCL); cuBLAS never records a range
    created = _sql(trace_files, SC22_4GPU,
                   "SELECT text FROM NVTX_EVENTS WHERE eventType = 75 ORDER BY text")
    assert created == [("DALI",), ("NCCL",), ("cuBLAS",)]

    p = load(POWER)
    assert len(p.nvtx) == 786
    cccl = p.nvtx[p.nvtx["domain"] == "CCCL"]
    assert len(cccl) == 565 and set(cccl["name"]) == {"cub::DeviceReduce::Sum"}
    default = p.nvtx[p.nvtx["domain"].isna()]
    shapes = default["name"].str.replace(r"\d+", "N", regex=True).value_counts().to_dict()
    assert shapes == {"Step N to N": 44, "Compute & Residual N": 44, "Copy N": 44, "IO N": 44,
                      "Compute N": 43, "Setup": 1, "Loop": 1}

    saxpy = load(SAXPY)
    counts = saxpy.nvtx["name"].value_counts().to_dict()
    assert counts == {"MPI_Send": 10, "MPI_Recv": 5, "saxpy": 5, "MPI_Init": 1,
                      "MPI_Finalize": 1}
    assert set(saxpy.nvtx.loc[saxpy.nvtx["name"].str.startswith("MPI"), "domain"]) == {"MPI"}


def test_nvtx_registered_strings(load: Callable[[str], Trace], trace_files: TraceFiles) -> None:
    """Registered strings have ``text`` NULL and ``textId`` -> StringIds."""
    rows = _sql(trace_files, POWER, "SELECT count(*) FROM NVTX_EVENTS WHERE eventType = 59 "
                "AND text IS NULL AND textId IS NOT NULL")
    assert rows == [(786,)]
    assert (load(POWER).nvtx["name"] != "<unnamed>").all()
    # 4gpu_baseline mixes inline and registered text
    rows = _sql(trace_files, SC22_4GPU, "SELECT count(*) FROM NVTX_EVENTS WHERE eventType = 59 "
                "AND text IS NULL AND textId IS NOT NULL")
    assert rows == [(1416,)]
    t = load(SC22_4GPU)
    assert t.nvtx["name"].notna().all() and (t.nvtx["name"] != "<unnamed>").all()


def test_no_nvtx_table(load: Callable[[str], Trace]) -> None:
    t = load(MW_BASELINE)
    assert t.nvtx.empty
    assert build_report(t).to_dict()["nvtx"] == []


def test_api_suffix_stripping(load: Callable[[str], Trace]) -> None:
    assert strip_api_suffix("cudaLaunchKernel_v7000") == "cudaLaunchKernel"
    assert strip_api_suffix("cudaGetDeviceProperties_v12000") == "cudaGetDeviceProperties"
    assert strip_api_suffix("cudaStreamGetCaptureInfo_v2_v11030") == "cudaStreamGetCaptureInfo_v2"
    assert strip_api_suffix("cuMemcpyHtoDAsync_v2") == "cuMemcpyHtoDAsync_v2"
    sc22 = set(load(SC22_BASELINE).api_calls["name"])
    assert {"cudaLaunchKernel", "cudaStreamSynchronize", "cudaMemcpyAsync"} <= sc22
    assert not any(n.endswith(("_v7000", "_v3020")) for n in sc22)
    mw = set(load(MW_BASELINE).api_calls["name"])
    assert {"cuMemcpyHtoDAsync_v2", "cuLaunchKernel", "cuStreamSynchronize"} <= mw
    power = load(POWER).api_calls
    assert "cudaStreamGetCaptureInfo_v2" in set(power["name"])
    families = power.drop_duplicates("name").set_index("name")["api"]
    assert families["cuLaunchKernel"] == "driver" and families["cudaLaunchKernel"] == "runtime"
    assert (power["name"] == "cudaLaunchKernel").sum() == 1994
    assert (power["name"] == "cuLaunchKernel").sum() == 1695


def test_mangled_short_name(load: Callable[[str], Trace]) -> None:
    t = load(FINCH_GPU)
    shorts = set(t.kernels["short_name"])
    assert any(s.startswith("_Z14ad_bc_bi_1_gpu7Float645Int_1") for s in shorts)
    assert {"gpu_update_sol_kernel", "gpu_assembly_kernel"} <= {
        s.split("(")[0] for s in shorts}


def test_huge_kernel_name(load: Callable[[str], Trace]) -> None:
    t = load(CUTLASS)
    assert t.kernels["name"].str.len().tolist() == [4889] * 6
    assert t.kernels["name"].iloc[0].startswith("void cutlass::Kernel<")
    report = build_report(t).to_dict()
    (kern,) = report["kernels"]
    assert len(kern["name"]) == 4889 and kern["count"] == 6 and kern["total_ns"] == 162_000_609


def test_saxpy_duplicate_api_rows(load: Callable[[str], Trace], trace_files: TraceFiles
                                  ) -> None:
    """38 calls are stored twice (``cudaMemcpy`` and a nested ``cudaMemcpy_v3020``)."""
    raw = _sql(trace_files, SAXPY, "SELECT count(*), count(DISTINCT correlationId) "
               "FROM CUPTI_ACTIVITY_KIND_RUNTIME")
    assert raw == [(95, 57)]
    t = load(SAXPY)
    assert len(t.api_calls) == 57 and t.api_calls["correlation_id"].is_unique
    memcpy = t.api_calls[t.api_calls["name"] == "cudaMemcpy"]
    assert len(memcpy) == 15
    # the outer row (earliest start, longest) is kept
    assert int((memcpy["end_ns"] - memcpy["start_ns"]).sum()) == 374_343_896
    joined = t.kernels.merge(t.api_calls, on=["pid", "correlation_id"])
    assert len(joined) == 5 == len(t.kernels)
    assert set(joined["name_y"]) == {"cudaLaunchKernel"}


def test_gpu_present_but_no_activity(load: Callable[[str], Trace]) -> None:
    t = load(CUDAQ)
    assert not t.has_gpu_activity
    assert len(t.gpus) == 8 and not t.gpus["used"].any()
    assert set(t.gpus["name"]) == {"NVIDIA H100 80GB HBM3"}
    assert t.meta.schema_version == "3.7.2"
    report = build_report(t).to_dict()
    assert report["kernels"] == [] and report["memcpy"] == []
    assert report["summary"]["devices"] == [] and report["summary"]["gpu_busy_ns"] == 0
    assert report["summary"]["gpus_in_node"] == 8
    names = {a["name"]: a["count"] for a in report["api_calls"]}
    assert names == {"cuDeviceGetUuid_v2": 8, "cuInit": 1, "cuMemGetInfo_v2": 1,
                     "cuModuleGetLoadingMode": 1}


def test_cpu_only_capture(load: Callable[[str], Trace]) -> None:
    t = load(UVMTORCH)
    assert not t.has_gpu_activity
    assert t.kernels.empty and t.memcpy.empty and t.nvtx.empty
    assert len(t.gpus) == 1 and not t.gpus["used"].any()
    top = t.osrt.assign(d=t.osrt["end_ns"] - t.osrt["start_ns"]).groupby("name")["d"].sum()
    assert top.idxmax() == "pthread_mutex_lock"
    report = build_report(t).to_dict()
    assert report["summary"]["devices"] == [] and report["summary"]["counts"]["osrt"] == 37474
    assert report["summary"]["span_ns"] > 0


def test_sample_cpu_only_trace() -> None:
    """The repository's own CPU-only sample (no shared traces needed)."""
    path = Path(__file__).resolve().parents[1] / "sample_traces" / "cpu_only_stall_app.sqlite"
    if not path.is_file():
        pytest.skip("sample_traces/cpu_only_stall_app.sqlite not generated")
    t = load_trace(path)
    assert not t.has_gpu_activity and t.kernels.empty
    report = build_report(t).to_dict()
    assert report["kernels"] == [] and report["summary"]["devices"] == []
    assert report["summary"]["gpu_busy_ns"] == 0


TABLES = ("kernels", "api_calls", "memcpy", "memset", "syncs", "osrt", "nvtx", "gpus",
          "threads", "cpu_samples")


def test_cross_schema_identical(load: Callable[[str], Trace]) -> None:
    """The same 2021.2 capture exported as schema 2.9.1 and 3.0.0 reads identically."""
    old, new = load(MW_BASELINE), load(MW_BASELINE_300)
    assert (old.meta.schema_version, new.meta.schema_version) == ("2.9.1", "3.0.0")
    for name in TABLES:
        a, b = getattr(old, name), getattr(new, name)
        assert len(a) == len(b), name
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_like=False, obj=name)
    d_old, d_new = build_report(old).to_dict(), build_report(new).to_dict()
    for doc in (d_old, d_new):  # where each run came from differs, nothing else
        doc.pop("inputs")
        doc["gate_samples"].pop("source")
        doc["gate_samples"].pop("context")  # provenance: the nsys version that exported it
    assert d_old == d_new


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.sampled_from([None, 0, 1, 2, 7]),
                          st.booleans(), st.sampled_from(["A", "B", None])), max_size=30))
def test_nvtx_domain_names_match_the_per_event_rule(
        events: list[tuple[int, int | None, bool, str | None]]) -> None:
    """Domain of each event by one join = the rule event by event: the name of the last
    domain-create event of (pid, id), else ``domain <id>``, None for id 0 or none."""
    frame = pd.DataFrame({"pid": [p for p, _, _, _ in events],
                          "domain_id": pd.array([d for _, d, _, _ in events], dtype="Int64"),
                          "name": pd.Categorical([n for _, _, _, n in events])})
    is_domain = np.array([c for _, _, c, _ in events], dtype=bool)
    names: dict[tuple[int, int], str] = {}
    for (p, d, create, n) in events:
        if create and d is not None:
            names[(p, d)] = str(n if n is not None else float("nan"))
    expected = [None if not d else names.get((p, d), f"domain {d}") for p, d, _, _ in events]
    assert list(_domain_names(frame, is_domain)[~is_domain]) == [
        e for e, create in zip(expected, is_domain, strict=True) if not create]
