"""Issue 15: several reports as one job (per-rank table, stragglers, imbalance), on a local
process pool or a Dask cluster.

Real data: three copies of ``nsightful/power_iteration__baseline.sqlite``, the third with every
kernel made 20 % longer by SQL, and the HTA Kineto pair ``trace_filter__sampled_rank-{0,1}``
(real NCCL collectives). Every printed figure is checked against a computation made here from
the files themselves (SQLite queries, the Kineto JSON) or by brute force.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import statistics
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, nsys_required
from helpers_cli import run_main
from hypothesis import given, settings
from hypothesis import strategies as st

import infraprof
from infraprof.analyses.ranks import (
    CROSS_RANK_FINDING_IDS,
    RankFacts,
    assign_ranks,
    cross_rank,
    late_causes,
)
from infraprof.inputs.many import capture_environment, expand_inputs, rank_from_environment
from infraprof.ranking.ranks import ManyReport

POWER = "nsightful/power_iteration__baseline.sqlite"
HTA = "hta-kineto/trace_filter__sampled_rank-{}.json.gz"
SLOW = 1.2


def _distributed() -> Any:
    """dask.distributed (the ``dev`` extra): a failure in CI when missing, else a skip."""
    try:
        import distributed
    except ImportError:
        if nsys_required():
            pytest.fail("dask.distributed is required in CI: pip install -e '.[dev]'")
        pytest.skip("dask.distributed not installed (pip install 'infraprof[dask]')")
    return distributed


def _slow_down(db_path: Path, factor: float) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute('UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET "end" = start + '
                   'CAST(ROUND(("end" - start) * ?) AS INTEGER)', (factor,))


@pytest.fixture(scope="module")
def copies(shared_traces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ranks") / "job"
    folder.mkdir()
    for i in range(3):
        target = folder / f"rank{i}.sqlite"
        shutil.copyfile(shared_traces / POWER, target)
        target.chmod(0o644)
    _slow_down(folder / "rank2.sqlite", SLOW)
    return folder


@pytest.fixture(scope="module")
def pooled_many(copies: Path) -> ManyReport:
    """The job through the local process pool (two workers)."""
    return infraprof.analyze_many([copies], jobs=2)


@pytest.fixture(scope="module")
def pooled(pooled_many: ManyReport) -> dict[str, Any]:
    result: dict[str, Any] = pooled_many.to_dict()
    return result


def _steps(db_path: Path) -> list[tuple[int, int, int]]:
    """Oracle: NVTX ``Step …`` ranges and the kernel time starting in each step's window."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        steps = db.execute(
            "SELECT n.start, n.\"end\" FROM NVTX_EVENTS n LEFT JOIN StringIds s ON s.id = "
            "n.textId WHERE coalesce(n.text, s.value) LIKE 'Step % to %' AND n.\"end\" IS NOT "
            "NULL ORDER BY n.start").fetchall()
        kernels = db.execute('SELECT start, "end" FROM CUPTI_ACTIVITY_KIND_KERNEL').fetchall()
    out = []
    for k, (s, e) in enumerate(steps):
        hi = steps[k + 1][0] if k + 1 < len(steps) else e
        inside = [b - a for a, b in kernels if s <= a < hi or (k + 1 == len(steps) and a == hi)]
        out.append((s, e, sum(inside)))
    return out


@pytest.mark.realtraces
def test_per_report_objects_equal_single_analyses(copies: Path, pooled: dict[str, Any]) -> None:
    paths = sorted(copies.glob("*.sqlite"))
    assert [r["inputs"][0]["path"] for r in pooled["reports"]] == [str(p) for p in paths]
    for path, obj in zip(paths, pooled["reports"], strict=True):
        assert obj == infraprof.analyze(path).to_dict()
    assert list(pooled) == ["schema_version", "reports", "ranks", "findings"]


@pytest.mark.realtraces
def test_per_rank_rows_against_the_files(copies: Path, pooled: dict[str, Any]) -> None:
    for row, report in zip(pooled["ranks"], pooled["reports"], strict=True):
        path = Path(row["input"])
        truth = _steps(path)
        durations = [e - s for s, e, _ in truth]
        assert row["rank_source"] == "input order"
        assert row["steps"] == len(truth) == 44
        assert row["step_p50_ns"] == round(statistics.median(durations))
        assert row["step_p99_ns"] == round(float(np.percentile(durations, 99)))
        assert row["compute_ns"] == sum(c for _, _, c in truth)
        assert row["gpu_busy_ns"] == report["summary"]["gpu_busy_ns"]
        assert row["idle_by_cause_ns"] == report["timeline"]["idle_breakdown_ns"]
        top = report["findings"][0]
        assert row["top_finding"] == {k: top[k] for k in ("id", "title", "impact_ns")}
        assert row["offset_ns"] == 0 and row["collectives"] == 0


@pytest.mark.realtraces
def test_slowed_copy_is_named_by_the_imbalance_finding(copies: Path,
                                                       pooled: dict[str, Any]) -> None:
    findings = pooled["findings"]
    assert [f["id"] for f in findings] == ["ranks.imbalance"]
    found = findings[0]
    assert found["evidence"]["rank"] == 2
    assert found["evidence"]["input"] == str(copies / "rank2.sqlite")
    assert found["title"].startswith("Rank 2 computes 20.0% more than the median rank")
    table = np.array([[c for _, _, c in _steps(copies / f"rank{i}.sqlite")] for i in range(3)])
    impact = float((table.max(axis=0) - np.median(table, axis=0)).sum())
    assert found["impact_ns"] == round(impact)
    assert abs(table[2].sum() / table[0].sum() - SLOW) < 1e-6


@pytest.mark.realtraces
def test_cli_json_equals_the_library(copies: Path, pooled: dict[str, Any],
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in sorted(copies.glob("*.sqlite"))]
    code, out, err = run_main(["analyze", *files, "-f", "json", "-j", "1"], monkeypatch, capsys)
    assert code == 0, err
    assert json.loads(out) == pooled


@pytest.mark.realtraces
def test_text_formats_print_the_checked_figures(pooled_many: ManyReport,
                                                pooled: dict[str, Any]) -> None:
    from infraprof.render.ranks import (
        render_many_html,
        render_many_markdown,
        render_many_terminal,
    )
    from infraprof.units import fmt_ns

    row = pooled["ranks"][2]  # checked against the files in the tests above
    impact = pooled["findings"][0]["impact_ns"]
    text = render_many_terminal(pooled_many)
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("2 "))
    for value in (row["compute_ns"], row["step_p50_ns"], row["step_p99_ns"], row["gpu_busy_ns"]):
        assert fmt_ns(value) in line
    assert fmt_ns(impact) == "225.818 ms"
    assert "recovers 225.818 ms of job time (ranks.imbalance)" in text
    idle = max(row["idle_by_cause_ns"].items(), key=lambda kv: kv[1])
    assert f"{idle[0]} {fmt_ns(idle[1])}" in line  # the top idle cause, checked above
    md = render_many_markdown(pooled_many)
    assert f"| 2 | input order | {fmt_ns(row['gpu_busy_ns'])} |" in md
    page = render_many_html(pooled_many)
    assert page.count('class="lane"') == 3 and "225.818 ms" in page


def test_expand_inputs_folders_and_globs(tmp_path: Path) -> None:
    db = ROOT / "sample_traces" / "demo_host_stall.sqlite"
    for name in ("b.sqlite", "a.sqlite", "a.nsys-rep", "notes.txt"):
        shutil.copyfile(db, tmp_path / name) if name != "notes.txt" else (
            tmp_path / name).write_text("x")
    (tmp_path / "a.nsys-rep").write_bytes(b"not read: a.sqlite is its export")
    assert expand_inputs([tmp_path]) == [tmp_path / "a.sqlite", tmp_path / "b.sqlite"]
    assert expand_inputs([tmp_path / "*.sqlite"]) == [tmp_path / "a.sqlite",
                                                      tmp_path / "b.sqlite"]


@pytest.mark.realtraces
def test_dask_local_gives_the_pool_json(copies: Path, pooled: dict[str, Any]) -> None:
    _distributed()
    assert infraprof.analyze_many([copies], jobs=1, dask="local").to_dict() == pooled


@pytest.mark.realtraces
def test_dask_scheduler_address_on_loopback(copies: Path, pooled: dict[str, Any]) -> None:
    """A LocalCluster started here on 127.0.0.1 only, used through its tcp:// address, and shut
    down (bounded: the client waits at most 60 s for it)."""
    distributed = _distributed()
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        result = infraprof.analyze_many([copies], dask=address).to_dict()
    finally:
        cluster.close(timeout=30)
    assert result == pooled
    assert cluster.status.name == "closed"


def _kineto_collectives(path: Path) -> list[tuple[str, int, int]]:
    """Oracle: NCCL kernels of a Kineto trace as ``(op, start_ns, end_ns)`` on the epoch clock."""
    with gzip.open(path, "rt") as fh:  # exact decimal microseconds, as the trace writes them
        events = json.load(fh, parse_float=Decimal)["traceEvents"]
    out = []
    for e in events:
        if e.get("cat") == "kernel" and "nccl" in e.get("name", "").lower():
            op = next(o for o in ("AllReduce", "ReduceScatter", "AllGather", "Broadcast",
                                  "AllToAll", "SendRecv", "Reduce", "Send", "Recv", "")
                      if o.lower() in e["name"].lower())
            start = int(Decimal(e["ts"]) * 1000)
            out.append((op.lower() or "collective", start, start + int(Decimal(e["dur"]) * 1000)))
    return sorted(out, key=lambda c: c[1])


@pytest.mark.realtraces
def test_straggler_on_real_nccl_collectives(shared_traces: Path) -> None:
    paths = [shared_traces / HTA.format(i) for i in (0, 1)]
    data = infraprof.analyze_many(paths, jobs=1).to_dict()
    stated = "PyTorch profiler distributedInfo.rank"
    assert [r["rank_source"] for r in data["ranks"]] == [stated, stated]
    truth = [_kineto_collectives(p) for p in paths]
    counts, late = [0, 0], [0, 0]
    for op in sorted({c[0] for c in truth[0]} & {c[0] for c in truth[1]}):
        mine = [[c for c in t if c[0] == op] for t in truth]
        for a, b in zip(*mine, strict=False):
            if a[1] != b[1]:
                who = int(b[1] > a[1])
                counts[who] += 1
                late[who] += abs(b[1] - a[1])
    assert [r["last_arrivals"] for r in data["ranks"]] == counts
    assert [r["collectives"] for r in data["ranks"]] == [len(t) for t in truth]
    for row, report in zip(data["ranks"], data["reports"], strict=True):
        comm = [d["communication"] for d in report["kernel_classes"]["devices"]]
        assert row["exposed_comm_ns"] == sum(c["exposed_ns"] for c in comm if c) > 0
    straggler = next(f for f in data["findings"] if f["id"] == "ranks.straggler")
    who = int(np.argmax(counts))
    ev = straggler["evidence"]
    assert ev["rank"] == who and ev["last_arrivals"] == counts[who]
    assert straggler["impact_ns"] == ev["late_ns"] == late[who]
    assert sum(ev["late_by_cause_ns"].values()) > 0
    assert straggler["title"].startswith(f"Rank {who} arrives last at {counts[who]} of ")


def _facts(**kw: Any) -> RankFacts:
    base: dict[str, Any] = dict(
        input="x", input_index=0, pid=None, rank_hint=None, rank_source="input order",
        session_start_utc_ns=0, span_start_ns=0, span_end_ns=1000, gpu_busy_ns=500,
        idle_by_cause_ns={}, exposed_comm_ns=0, steps=[(0, 1000, 500)], collectives=[],
        gaps=[], step_name=None)
    return RankFacts(**{**base, **kw})


def test_straggler_synthetic_names_the_late_rank_and_its_own_cause() -> None:
    """Rank 1 starts every all-reduce 30 ns after rank 0 and sits in a host-cpu gap meanwhile;
    rank 0's kernels run 30 ns longer (it waits inside)."""
    early = [("allreduce", 100 * i, 100 * i + 50) for i in range(5)]
    late = [("allreduce", 100 * i + 30, 100 * i + 50) for i in range(5)]
    gaps = [(100 * i + 10, 100 * i + 30, "host-cpu") for i in range(5)]
    facts = [_facts(input="a", collectives=early),
             _facts(input="b", input_index=1, collectives=late, gaps=gaps,
                    session_start_utc_ns=0)]
    result = cross_rank(facts)
    assert [r["last_arrivals"] for r in result.ranks] == [0, 5]
    (finding,) = [f for f in result.findings if f.id == "ranks.straggler"]
    assert finding.impact_ns == 5 * 30
    assert finding.evidence["late_by_cause_ns"] == {"host-cpu": 100, "compute": 50}
    assert "host-cpu" in finding.title and finding.evidence["rank"] == 1


def test_no_straggler_when_arrivals_alternate() -> None:
    a = [("allreduce", 100 * i + (30 if i % 2 else 0), 100 * i + 50) for i in range(6)]
    b = [("allreduce", 100 * i + (0 if i % 2 else 30), 100 * i + 50) for i in range(6)]
    result = cross_rank([_facts(collectives=a), _facts(input_index=1, collectives=b)])
    assert not [f for f in result.findings if f.id == "ranks.straggler"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 30)), max_size=6),
       st.lists(st.tuples(st.integers(0, 60), st.integers(1, 30),
                          st.sampled_from(["sync", "host-cpu"])), max_size=6))
def test_late_causes_match_brute_force(windows: list[tuple[int, int]],
                                       raw_gaps: list[tuple[int, int, str]]) -> None:
    wins = [(s, s + d) for s, d in windows]
    gaps, cursor = [], 0
    for start, length, cause in sorted(raw_gaps):  # disjoint gaps, as a timeline's are
        s = max(start, cursor)
        gaps.append((s, s + length, cause))
        cursor = s + length
    covered = {t for s, e in wins for t in range(s, e)}
    expected: dict[str, int] = {}
    for s, e, cause in gaps:
        n = len(covered & set(range(s, e)))
        if n:
            expected[cause] = expected.get(cause, 0) + n
    busy = len(covered) - sum(expected.values())
    if busy:
        expected["compute"] = busy
    assert late_causes(_facts(gaps=gaps), wins) == expected


def test_assign_ranks_uses_stated_ranks_only_when_distinct() -> None:
    stated = [_facts(rank_hint=1, rank_source="RANK in the capture environment"),
              _facts(input_index=1, rank_hint=0, rank_source="RANK in the capture environment")]
    assert assign_ranks(stated) == [(1, "RANK in the capture environment"),
                                    (0, "RANK in the capture environment")]
    repeated = [_facts(rank_hint=0), _facts(input_index=1, rank_hint=0)]
    assert [r for r, _ in assign_ranks(repeated)] == [0, 1]
    assert "repeated" in assign_ranks(repeated)[0][1]


@pytest.mark.realtraces
def test_rank_from_the_capture_environment(copies: Path, tmp_path: Path) -> None:
    """``META_DATA_CAPTURE`` environment rows (nsys 2023.3+) give each report its rank."""
    paths = []
    for rank, name in ((1, "a.sqlite"), (0, "b.sqlite")):
        target = tmp_path / name
        shutil.copyfile(copies / "rank0.sqlite", target)
        with sqlite3.connect(target) as db:
            db.execute("INSERT INTO META_DATA_CAPTURE VALUES "
                       "('PROCESS_0:ENVIRONMENT_VARIABLE', ?)", (f'SLURM_PROCID="{rank}"',))
        paths.append(target)
    assert capture_environment(str(paths[0]))[0]["SLURM_PROCID"] == "1"
    assert rank_from_environment({"PMI_RANK": "3", "RANK": "x"}) == (3, "PMI_RANK")
    data = infraprof.analyze_many(paths, jobs=1).to_dict()
    assert [(r["rank"], r["input"], r["rank_source"]) for r in data["ranks"]] == [
        (0, str(paths[1]), "SLURM_PROCID in the capture environment"),
        (1, str(paths[0]), "SLURM_PROCID in the capture environment")]


def test_expand_inputs_errors(tmp_path: Path) -> None:
    from infraprof.errors import InputError

    (tmp_path / "empty").mkdir()  # at most one report-like entry: a capture folder, as always
    assert expand_inputs([tmp_path / "empty"]) == [tmp_path / "empty"]
    (tmp_path / "docs").mkdir()
    for name in ("a.json", "b.json"):
        (tmp_path / "docs" / name).write_text('{"not": "a trace"}')
    with pytest.raises(InputError, match=r"a\.json"):  # not a trace: said, not skipped
        expand_inputs([tmp_path / "docs"])
    run = {"schema": "infraprof.gate.run/1", "source": "x", "values": {}, "samples": {}}
    for name in ("a.json", "b.json"):
        (tmp_path / "docs" / name).write_text(json.dumps(run))
    with pytest.raises(InputError, match="holds no nsys report"):
        expand_inputs([tmp_path / "docs"])
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([tmp_path / "nothing*.sqlite"])


@pytest.mark.realtraces
def test_cli_errors_are_one_line(copies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    one = str(copies / "rank0.sqlite")
    cases = [
        (["analyze", str(tmp_path / "none*.sqlite"), one], 3, "matches no file"),
        (["analyze", one, one], 3, "given twice"),
        (["analyze", one, str(copies / "rank1.sqlite"), "--ncu", one], 2, "--ncu and --pyspy"),
        (["analyze", str(copies), "--memory-budget", "lots"], 2, "--memory-budget"),
        (["analyze", str(copies), "--dask", "nowhere"], 2, "scheduler address"),
    ]
    for argv, want, text in cases:
        code, _, err = run_main(argv, monkeypatch, capsys)
        assert code == want, (argv, err)
        assert err.startswith("infraprof: error:") and err.count("\n") == 1 and text in err
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copyfile(copies / "rank0.sqlite", broken / "a.sqlite")
    (broken / "b.sqlite").write_bytes((copies / "rank1.sqlite").read_bytes()[:65536])
    code, _, err = run_main(["analyze", str(broken), "-j", "2"], monkeypatch, capsys)
    assert code == 3 and err.count("\n") == 1 and "b.sqlite: truncated SQLite file" in err
    monkeypatch.setitem(sys.modules, "distributed", None)  # dask not installed
    code, _, err = run_main(["analyze", str(copies), "--dask", "local"], monkeypatch, capsys)
    assert code == 4 and err.count("\n") == 1 and "pip install" in err


def test_renderers_escape_hostile_names() -> None:
    from infraprof.render.ranks import (
        render_many_html,
        render_many_markdown,
        render_many_terminal,
    )

    name = 'r<script>"&\x1b[31m|*\n'
    facts = [_facts(input=name, steps=[(0, 1000, 900)]),
             _facts(input=name + "2", input_index=1, steps=[(0, 1000, 100)])]
    result = cross_rank(facts)
    report = {"inputs": [{"path": name}], "findings": [{"title": name}]}
    many = ManyReport([report], result.ranks, result.findings)
    page = render_many_html(many)
    assert "<script>" not in page and "&lt;script&gt;" in page and "\x1b" not in page
    assert "\x1b" not in render_many_terminal(many)
    md = render_many_markdown(many)
    assert "<script>" not in md and "\x1b" not in md and "\\|" in md


def test_cross_rank_finding_ids_are_documented() -> None:
    text = (ROOT / "docs" / "findings.md").read_text(encoding="utf-8")
    for fid in CROSS_RANK_FINDING_IDS:
        assert f"## `{fid}`" in text


@pytest.mark.realtraces
def test_job_json_matches_its_schema(pooled: dict[str, Any]) -> None:
    import jsonschema

    many = json.loads((ROOT / "docs" / "json-schema-many.json").read_text(encoding="utf-8"))
    single = json.loads((ROOT / "docs" / "json-schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(many)
    jsonschema.validate(pooled, many)
    for report in pooled["reports"]:
        jsonschema.validate(report, single)
    text = (ROOT / "docs" / "json-schema.md").read_text(encoding="utf-8")
    rows = many["properties"]["ranks"]["items"]["properties"]
    assert [k for k in [*many["properties"], *rows] if f"`{k}`" not in text] == []


def test_gate_job_metrics_take_the_slowest_rank() -> None:
    from infraprof.analyses.run_metrics import RunMetrics
    from infraprof.gate.ranks import job_metrics

    fast = RunMetrics("a", values={"gpu:busy_ns": 10.0, "only:a": 1.0},
                      samples={"step:duration": [5.0, 9.0, 5.0]})
    slow = RunMetrics("b", values={"gpu:busy_ns": 30.0},
                      samples={"step:duration": [7.0, 6.0, 8.0, 99.0]})
    job = job_metrics([fast, slow], "job")
    assert job.samples["step:duration"] == [7.0, 9.0, 8.0]  # per step, the slowest rank
    assert job.values["step:duration:p50_ns"] == 8.0
    assert job.values["gpu:busy_ns"] == 30.0 and "only:a" not in job.values
    assert job.values["rank0:only:a"] == 1.0 and job.values["rank1:gpu:busy_ns"] == 30.0
    assert job.samples["rank1:step:duration"] == [7.0, 6.0, 8.0, 99.0]


@pytest.mark.realtraces
def test_gate_accepts_folders_of_per_rank_reports(copies: Path, pooled: dict[str, Any],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base, cand = tmp_path / "base", tmp_path / "cand"
    for folder, names in ((base, ("rank0", "rank1")), (cand, ("rank0", "rank2"))):
        folder.mkdir()
        for i, name in enumerate(names):
            shutil.copyfile(copies / f"{name}.sqlite", folder / f"r{i}.sqlite")
    # each copy's own gate metrics, from its single analysis (analyze JSON `gate_samples`)
    busy = [r["gate_samples"]["values"]["gpu:busy_ns"] for r in pooled["reports"]]
    code, out, err = run_main(["compare", "--base", str(base), "--cand", str(cand), "-f", "json"],
                              monkeypatch, capsys)
    assert code == 0, err
    results = {r["metric"]: r for r in json.loads(out)["metrics"]}
    assert results["gpu:busy_ns"]["base"] == max(busy[0], busy[1])
    assert results["gpu:busy_ns"]["cand"] == max(busy[0], busy[2])
    assert results["rank1:gpu:busy_ns"]["base"] == busy[1]
    assert results["rank1:gpu:busy_ns"]["cand"] == busy[2]


def test_worker_count_is_bounded_by_cores_inputs_and_memory(tmp_path: Path) -> None:
    from infraprof.many import BASE_BYTES, BYTES_PER_INPUT_BYTE, estimate_bytes, worker_count

    files = []
    for i in range(8):
        path = tmp_path / f"r{i}.sqlite"
        path.write_bytes(b"x" * (1000 * (i + 1)))
        files.append(path)
    need = estimate_bytes(files[-1])
    assert need == BASE_BYTES + BYTES_PER_INPUT_BYTE * 8000
    assert worker_count(files, jobs=3, memory_budget=100 * need) == 3
    assert worker_count(files[:2], jobs=8, memory_budget=100 * need) == 2
    assert worker_count(files, jobs=8, memory_budget=5 * need) == 5
    assert worker_count(files, jobs=8, memory_budget=1) == 1  # at least one
