"""infraprof's kernel / CUDA API / memory-operation summaries against ``nsys stats`` (2022.4).

For every nsys SQLite export in ``../shared/traces`` (``.gz`` ones inflated) and every report the
installed nsys can convert, the ``kernels``, ``api_calls`` and ``memcpy`` sections of
``build_report(load_trace(...)).to_dict()`` are compared with ``nsys stats -r gpukernsum,
cudaapisum,gpumemtimesum,gpumemsizesum -f csv`` run on a private copy, and with an independent
SQL computation written here.

Documented differences, normalised here rather than tolerated:

* ``gpukernsum`` groups by name *and* grid/block: rows are aggregated per name (count/total
  summed, min/max); the median (not combinable) is compared with nsys only for names with a
  single grid/block group, otherwise with the SQL oracle.
* ``cudaapisum`` groups by raw ``nameId`` and strips only 4-digit ``_vNNNN`` suffixes, so a
  name can appear several times; rows are aggregated per name stripped of ``_v<4-5 digits>``.
  It also counts API rows duplicated in the export (2.9.1 saxpy: ``cudaMemcpy`` plus a nested
  ``cudaMemcpy_v3020`` with the same correlation id) twice; infraprof counts them once, so
  for those names nsys must exceed infraprof by exactly the duplicates, and infraprof is held
  to the SQL oracle.
* memory operations: ``[CUDA memcpy HtoD]`` -> ``HtoD``, ``[CUDA memset]`` -> ``memset``;
  ``gpumemsizesum`` prints decimal MB with 3 decimals, compared to bytes within that rounding.
* nsys prints avg/median/stddev with one decimal, infraprof rounds to integer ns:
  tolerance 0.55 ns. Counts, totals, minima and maxima are exact.
"""

from __future__ import annotations

import csv
import re
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_traces import TraceFiles, nsys_report_files, nsys_sqlite_files, ro_connect, sha256

from infraprof.errors import InputError
from infraprof.inputs import load_trace
from infraprof.ranking import build_report

pytestmark = [pytest.mark.realtraces, pytest.mark.nsys]

SQLITES = nsys_sqlite_files()
REPORTS = nsys_report_files()
STATS_REPORTS = ("gpukernsum", "cudaapisum", "gpumemtimesum", "gpumemsizesum")
# Reports that nsys 2022.4 cannot read (traces/README.md): written by a newer nsys.
TOO_NEW = {
    "nersc-sc23-dl/4workers.nsys-rep": "2023.2.3.1001",
    "cudaq-vqe-nsys-pyspy/report1.nsys-rep": "2023.4.4.54",
}
ROUNDED_TOL = 0.55  # nsys: 1 decimal; infraprof: integer ns
EXACT_ROUND_TOL = 0.5 + 1e-6  # infraprof's integer rounding of an exact value
API_SUFFIX = re.compile(r"_v\d{4,5}$")
COPY_KINDS = {
    0: "Unknown", 1: "HtoD", 2: "DtoH", 3: "HtoA", 4: "AtoH", 5: "AtoA", 6: "AtoD", 7: "DtoA",
    8: "DtoD", 9: "HtoH", 10: "PtoP", 11: "UVM HtoD", 12: "UVM DtoH", 13: "UVM DtoD",
}


def test_discovery_finds_the_known_traces(shared_traces: Path) -> None:
    """Guards the parametrisation: an empty glob must not pass silently."""
    for rel in ("ncar-miniweather-nsys/miniweather_baseline.sqlite",
                "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite",
                "uvmtorch-no-cuda/report1.sqlite",
                "nersc-sc22-dl/baseline.nsys2022.4-export.sqlite.gz"):
        assert rel in SQLITES
    assert len(SQLITES) >= 14
    assert "ncar-miniweather-nsys/miniweather_baseline.qdrep" in REPORTS
    assert set(TOO_NEW) <= set(REPORTS)
    assert len(REPORTS) >= 10


# --------------------------------------------------------------------------------------------
# nsys stats


def nsys_stats(nsys: str, sqlite_copy: Path) -> dict[str, list[dict[str, str]] | None]:
    """CSV rows per report; ``None`` when nsys skipped the report (no such data)."""
    prefix = sqlite_copy.parent / "stats"
    proc = subprocess.run(
        [nsys, "stats", "-r", ",".join(STATS_REPORTS), "-f", "csv", "--force-overwrite", "true",
         "-o", str(prefix), str(sqlite_copy)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out: dict[str, list[dict[str, str]] | None] = {}
    for report in STATS_REPORTS:
        csv_path = Path(f"{prefix}_{report}.csv")
        skipped = re.search(rf"{report}\.py\] to \[[^\]]*\]\.\.\. SKIPPED", proc.stdout)
        text = csv_path.read_text(encoding="utf-8") if csv_path.is_file() else ""
        if skipped or not text.strip():
            assert skipped, f"{report}: empty output without SKIPPED:\n{proc.stdout[-2000:]}"
            out[report] = None
            continue
        rows = list(csv.reader(text.splitlines()))
        header = rows[0]
        assert all(len(r) == len(header) for r in rows[1:]), f"{report}: ragged CSV"
        out[report] = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    return out


# --------------------------------------------------------------------------------------------
# independent SQL oracle


@dataclass
class Stats:
    count: int
    total: int
    avg: float
    median: float
    min: int
    max: int
    std: float

    @classmethod
    def of(cls, values: list[int]) -> Stats:
        a = np.asarray(values, dtype=np.int64)
        return cls(
            count=len(a), total=int(a.sum()), avg=float(a.sum()) / len(a),
            median=float(np.median(a)), min=int(a.min()), max=int(a.max()),
            std=float(np.std(a, ddof=1)) if len(a) > 1 else 0.0,
        )


@dataclass
class Oracle:
    kernels: dict[str, Stats]
    api: dict[str, Stats]
    api_duplicates: dict[str, list[int]]  # stripped name -> durations of dropped duplicates
    memops: dict[str, Stats]
    memop_bytes: dict[str, list[int]]
    rows: dict[str, int]


def _table(conn: sqlite3.Connection, base: str) -> str | None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return base if base in names else None


def _group(rows: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for name, value in rows:
        out[name].append(int(value))
    return out


def sql_oracle(path: Path) -> Oracle:
    with ro_connect(path) as conn:
        conn.create_function("strip_v", 1, lambda s: API_SUFFIX.sub("", s), deterministic=True)
        rows: dict[str, int] = {}
        kernels: dict[str, list[int]] = {}
        if t := _table(conn, "CUPTI_ACTIVITY_KIND_KERNEL"):
            kernels = _group(conn.execute(
                f'SELECT s.value, k."end" - k.start FROM {t} k '
                "JOIN StringIds s ON s.id = k.demangledName").fetchall())
            rows["kernels"] = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        api: dict[str, list[int]] = {}
        dups: dict[str, list[int]] = {}
        if t := _table(conn, "CUPTI_ACTIVITY_KIND_RUNTIME"):
            ranked = (
                "WITH r AS (SELECT strip_v(s.value) AS name, a.globalTid AS tid, "
                'a.correlationId AS corr, a.start AS start, a."end" - a.start AS dur '
                f"FROM {t} a JOIN StringIds s ON s.id = a.nameId), "
                "ranked AS (SELECT name, dur, row_number() OVER (PARTITION BY tid, corr, name "
                "ORDER BY start, dur DESC) AS rn FROM r) "
            )
            api = _group(conn.execute(ranked + "SELECT name, dur FROM ranked WHERE rn = 1")
                         .fetchall())
            dups = _group(conn.execute(ranked + "SELECT name, dur FROM ranked WHERE rn > 1")
                          .fetchall())
        memops: dict[str, list[int]] = defaultdict(list)
        membytes: dict[str, list[int]] = defaultdict(list)
        if t := _table(conn, "CUPTI_ACTIVITY_KIND_MEMCPY"):
            for kind, dur, size in conn.execute(f'SELECT copyKind, "end" - start, bytes FROM {t}'):
                memops[COPY_KINDS[kind]].append(dur)
                membytes[COPY_KINDS[kind]].append(size)
            rows["memcpy"] = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        if t := _table(conn, "CUPTI_ACTIVITY_KIND_MEMSET"):
            for dur, size in conn.execute(f'SELECT "end" - start, bytes FROM {t}'):
                memops["memset"].append(dur)
                membytes["memset"].append(size)
            rows["memset"] = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
    return Oracle(
        kernels={k: Stats.of(v) for k, v in kernels.items()},
        api={k: Stats.of(v) for k, v in api.items()},
        api_duplicates=dups,
        memops={k: Stats.of(v) for k, v in memops.items()},
        memop_bytes=dict(membytes),
        rows=rows,
    )


# --------------------------------------------------------------------------------------------
# comparisons


def _by_key(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    out = {str(r[key]): r for r in records}
    assert len(out) == len(records), f"duplicate {key} in infraprof's section"
    return out


def _close(ours: int, expected: float, tol: float, what: str) -> None:
    assert abs(ours - expected) <= tol + 1e-9 * abs(expected), f"{what}: {ours} vs {expected}"


def check_against_oracle(section: list[dict[str, Any]], key: str,
                         oracle: dict[str, Stats], label: str) -> None:
    ours = _by_key(section, key)
    assert set(ours) == set(oracle), f"{label}: names differ from SQL"
    for name, exp in oracle.items():
        got, what = ours[name], f"{label} {name[:80]!r}"
        assert (got["count"], got["total_ns"], got["min_ns"], got["max_ns"]) == (
            exp.count, exp.total, exp.min, exp.max), what
        _close(got["avg_ns"], exp.avg, EXACT_ROUND_TOL, f"{what} avg")
        _close(got["median_ns"], exp.median, EXACT_ROUND_TOL, f"{what} median")
        _close(got["std_ns"], exp.std, EXACT_ROUND_TOL, f"{what} std")


def _num(row: dict[str, str], col: str) -> float:
    return float(row[col])


def _aggregate_nsys(rows: list[dict[str, str]], name_of: Callable[[dict[str, str]], str]
                    ) -> dict[str, list[dict[str, str]]]:
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[name_of(row)].append(row)
    return groups


def check_against_nsys(section: list[dict[str, Any]], key: str,
                       groups: dict[str, list[dict[str, str]]], count_col: str, label: str,
                       duplicates: dict[str, list[int]] | None = None) -> int:
    """Compare per-name aggregates with nsys rows; returns how many names were compared."""
    ours = _by_key(section, key)
    assert set(ours) == set(groups), f"{label}: names differ from nsys: " \
        f"{sorted(set(ours) ^ set(groups))[:5]}"
    for name, rows in groups.items():
        got, what = ours[name], f"{label} {name[:80]!r}"
        count = sum(int(r[count_col]) for r in rows)
        total = sum(int(r["Total Time (ns)"]) for r in rows)
        dup = (duplicates or {}).get(name, [])
        if dup:
            # nsys counts the export's duplicated rows; infraprof (and the oracle) do not.
            assert (count, total) == (got["count"] + len(dup), got["total_ns"] + sum(dup)), what
            continue
        assert (got["count"], got["total_ns"]) == (count, total), what
        assert got["min_ns"] == min(int(r["Min (ns)"]) for r in rows), what
        assert got["max_ns"] == max(int(r["Max (ns)"]) for r in rows), what
        _close(got["avg_ns"], total / count, EXACT_ROUND_TOL, f"{what} avg")
        if len(rows) == 1:
            row = rows[0]
            _close(got["avg_ns"], _num(row, "Avg (ns)"), ROUNDED_TOL, f"{what} avg")
            _close(got["median_ns"], _num(row, "Med (ns)"), ROUNDED_TOL, f"{what} median")
            _close(got["std_ns"], _num(row, "StdDev (ns)"), ROUNDED_TOL, f"{what} std")
    return len(groups)


_MEMOP_NAME = re.compile(r"^\[CUDA (?:(Unified Memory) )?(?:memcpy (\w+)|(memset))\]$")


def memop_name(nsys_name: str) -> str:
    m = _MEMOP_NAME.match(nsys_name)
    assert m, nsys_name
    uvm, direction, memset = m.groups()
    if memset:
        return "memset"
    return f"UVM {direction}" if uvm else str(direction)


def check_memops(section: list[dict[str, Any]], by_time: list[dict[str, str]] | None,
                 by_size: list[dict[str, str]] | None, oracle: Oracle) -> None:
    check_against_oracle(section, "operation", oracle.memops, "memop")
    ours = _by_key(section, "operation")
    for op, sizes in oracle.memop_bytes.items():
        got = ours[op]
        assert (got["bytes"], got["min_bytes"], got["max_bytes"]) == (
            sum(sizes), min(sizes), max(sizes)), op
        assert got["avg_bytes"] == pytest.approx(sum(sizes) / len(sizes), abs=5e-4)
    if by_time is None:
        assert by_size is None and not section
        return
    assert by_size is not None
    time_groups = {memop_name(r["Operation"]): [r] for r in by_time}
    assert len(time_groups) == len(by_time)
    check_against_nsys(section, "operation", time_groups, "Count", "memop")
    size_rows = {memop_name(r["Operation"]): r for r in by_size}
    assert set(size_rows) == set(ours)
    mb_tol = 0.0005 + 1e-9
    for op, row in size_rows.items():
        got = ours[op]
        assert got["count"] == int(row["Count"]), op
        assert abs(got["bytes"] / 1e6 - float(row["Total (MB)"])) <= mb_tol, op
        assert abs(got["avg_bytes"] / 1e6 - float(row["Avg (MB)"])) <= mb_tol, op
        assert abs(got["min_bytes"] / 1e6 - float(row["Min (MB)"])) <= mb_tol, op
        assert abs(got["max_bytes"] / 1e6 - float(row["Max (MB)"])) <= mb_tol, op


def compare_with_nsys(report: dict[str, Any], stats: dict[str, list[dict[str, str]] | None],
                      oracle: Oracle) -> dict[str, int]:
    """All checks for one export; returns how many names each section compared with nsys."""
    compared: dict[str, int] = {}
    counts = report["summary"]["counts"]
    for table, n in oracle.rows.items():
        assert counts[table] == n, table
    # kernels
    check_against_oracle(report["kernels"], "name", oracle.kernels, "kernel")
    kern = stats["gpukernsum"]
    if kern is None:
        assert report["kernels"] == []
    else:
        groups = _aggregate_nsys(kern, lambda r: r["Name"])
        compared["kernels"] = check_against_nsys(report["kernels"], "name", groups, "Instances",
                                                 "kernel")
    # CUDA API
    check_against_oracle(report["api_calls"], "name", oracle.api, "api")
    api = stats["cudaapisum"]
    if api is None:
        assert report["api_calls"] == []
    else:
        groups = _aggregate_nsys(api, lambda r: API_SUFFIX.sub("", r["Name"]))
        compared["api_calls"] = check_against_nsys(
            report["api_calls"], "name", groups, "Num Calls", "api", oracle.api_duplicates)
    # memory operations
    check_memops(report["memcpy"], stats["gpumemtimesum"], stats["gpumemsizesum"], oracle)
    compared["memcpy"] = len(stats["gpumemtimesum"] or [])
    return compared


# --------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("rel", SQLITES)
def test_sqlite_summaries_match_nsys_stats(rel: str, trace_files: TraceFiles,
                                           nsys_bin: str) -> None:
    path = trace_files.path(rel)
    report = build_report(load_trace(path)).to_dict()
    stats = nsys_stats(nsys_bin, trace_files.private_copy(rel))
    compare_with_nsys(report, stats, sql_oracle(path))


@pytest.mark.parametrize("rel", [r for r in REPORTS if r not in TOO_NEW])
def test_report_summaries_match_nsys_stats(rel: str, trace_files: TraceFiles, nsys_bin: str,
                                           export_cache: Path) -> None:
    copy = trace_files.private_copy(rel)
    digest = sha256(copy)
    trace = load_trace(copy)
    exported = Path(trace.meta.sqlite_path)
    assert exported.is_relative_to(export_cache)
    assert sha256(copy) == digest
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # nothing beside it
    report = build_report(trace).to_dict()
    stats_copy = copy.parent.parent / (copy.parent.name + "-export")
    stats_copy.mkdir()
    target = stats_copy / "export.sqlite"
    target.write_bytes(exported.read_bytes())
    stats = nsys_stats(nsys_bin, target)
    compared = compare_with_nsys(report, stats, sql_oracle(exported))
    assert compared["kernels"] > 0 and compared["api_calls"] > 0


@pytest.mark.parametrize("rel", sorted(TOO_NEW))
def test_report_newer_than_nsys_is_an_input_error(rel: str, trace_files: TraceFiles,
                                                  nsys_bin: str, export_cache: Path) -> None:
    installed = re.search(r"\d{4}\.\d+\.\d+(?:\.\d+)?", subprocess.run(
        [nsys_bin, "--version"], capture_output=True, text=True, check=True).stdout)
    assert installed
    copy = trace_files.private_copy(rel)
    digest = sha256(copy)
    with pytest.raises(InputError) as err:
        load_trace(copy)
    assert TOO_NEW[rel] in err.value.message and installed.group(0) in err.value.message
    assert "\n" not in err.value.message
    assert sha256(copy) == digest
    # no stub export cached, no temporary folder left behind
    assert not list(export_cache.rglob(f"{copy.stem}-*"))
    assert not list(export_cache.rglob("infraprof-export-*"))


def test_known_oracle_figures(trace_files: TraceFiles, nsys_bin: str) -> None:
    """A few headline numbers, so a reader sees what is being compared (traces/README.md)."""
    rel = "ncar-miniweather-nsys/miniweather_baseline.nsys2022.4-export.sqlite"
    report = build_report(load_trace(trace_files.path(rel))).to_dict()
    stats = nsys_stats(nsys_bin, trace_files.private_copy(rel))
    api = _by_key(report["api_calls"], "name")["cuStreamSynchronize"]
    assert (api["count"], api["total_ns"], api["median_ns"]) == (5778, 69_935_166, 3980)
    nsys_api = {r["Name"]: r for r in stats["cudaapisum"] or []}["cuStreamSynchronize"]
    assert (nsys_api["Num Calls"], nsys_api["Total Time (ns)"], nsys_api["Med (ns)"]) == (
        "5778", "69935166", "3980.5")
    kern = _by_key(report["kernels"], "name")["compute_tendencies_z_334_gpu"]
    assert (kern["count"], kern["total_ns"], kern["avg_ns"]) == (288, 24_454_637, 84912)
    memop = _by_key(report["memcpy"], "operation")
    assert (memop["DtoH"]["count"], memop["DtoH"]["bytes"]) == (591, 2_041_376)
    assert (memop["memset"]["count"], memop["memset"]["total_ns"]) == (4, 3423)


def test_shared_inputs_unchanged(shared_traces: Path) -> None:
    """Runs last in this module: every nsys file used above still matches MANIFEST.tsv, and
    no export or stats output appeared beside them."""
    manifest = {}
    for line in (shared_traces / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        name, size, digest, *_ = line.split("\t")
        manifest[name] = (int(size), digest)
    for rel in [*SQLITES, *REPORTS]:
        path = shared_traces / rel
        assert (path.stat().st_size, sha256(path)) == manifest[rel], rel
    listed = set(manifest) | {"MANIFEST.tsv", "README.md"}
    present = {p.relative_to(shared_traces).as_posix() for p in shared_traces.rglob("*")
               if p.is_file()}
    assert present <= listed, sorted(present - listed)
