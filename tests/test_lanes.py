"""Two analysis threads (``analyses/lanes.py``): the same reports as one thread, the plan's
order, errors, the memory-budget rule, and ``shared_value`` computing once under threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import SAMPLE_TRACES
from helpers_cli import run_main

from infraprof.analyses import lanes
from infraprof.analyses.registry import ANALYSES, run_analyses
from infraprof.errors import UsageError
from infraprof.inputs.traces import load_input
from infraprof.ranking.report import build_report
from infraprof.render.json_report import render_json
from infraprof.shared_value import shared_value

SHARED = ["ncar-miniweather-nsys/miniweather_baseline.sqlite",
          "nsightful/power_iteration__baseline.sqlite",
          "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite",
          "cudaq-vqe-nsys-pyspy/report1.sqlite",
          "hta-kineto/critical_path__alexnet__benchmark_result_2869224_1695835535_trace.json.gz"]


def _json_both_ways(path: Path) -> tuple[str, str]:
    loaded = load_input(path, use_cache=False)
    return tuple(render_json(build_report(loaded.trace, lanes=count))  # type: ignore[return-value]
                 for count in (1, 2))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLE_TRACES.glob("*.sqlite")))
def test_two_lanes_give_the_same_report_on_samples(name: str) -> None:
    one, two = _json_both_ways(SAMPLE_TRACES / name)
    assert one == two


@pytest.mark.realtraces
@pytest.mark.parametrize("rel", SHARED)
def test_two_lanes_give_the_same_report_on_shared(rel: str, shared_traces: Path) -> None:
    one, two = _json_both_ways(shared_traces / rel)
    assert one == two and '"findings"' in one


def test_outputs_come_back_in_registry_order() -> None:
    from infraprof.analyses.context import AnalysisContext

    trace = load_input(SAMPLE_TRACES / "demo_launch_bound.sqlite", use_cache=False).trace
    ctx = AnalysisContext(trace)
    run_analyses(ctx, lanes=2)
    order = [a.id for a in ANALYSES]
    assert list(ctx.outputs) == sorted(ctx.outputs, key=order.index)
    assert {"launch", "tiny_kernels", "gaps"} <= set(ctx.outputs)


def test_the_plan_keeps_every_requirement_ahead() -> None:
    """Each side-lane analysis exists; each analysis's requirements run before it in its
    own lane (or, for the side lane, on the main lane before the side lane starts)."""
    ids = [a.id for a in ANALYSES]
    assert set(lanes.SIDE_LANE) <= set(ids) and lanes.SIDE_STARTS_AFTER in ids
    main = [i for i in ids if i not in lanes.SIDE_LANE]
    side = [i for i in ids if i in lanes.SIDE_LANE]
    before_side = main[:main.index(lanes.SIDE_STARTS_AFTER) + 1]
    for analysis in ANALYSES:
        lane = side if analysis.id in lanes.SIDE_LANE else main
        earlier = lane[:lane.index(analysis.id)]
        for need in analysis.requires:
            assert need in earlier or (lane is side and need in before_side), (analysis.id,
                                                                                 need)


def _fake(*ids: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=i) for i in ids]


def test_side_lane_starts_after_the_timelines() -> None:
    seen: list[str] = []

    def step(analysis: SimpleNamespace) -> None:
        time.sleep(0.01)
        seen.append(analysis.id)

    main, side = _fake("summary", "timeline", "attribution"), _fake("launch", "tiny_kernels")
    lanes.run_two_lanes(main, side, step, {i: n for n, i in enumerate(
        ["summary", "timeline", "attribution", "launch", "tiny_kernels"])})
    assert sorted(seen) == sorted(["summary", "timeline", "attribution", "launch",
                                   "tiny_kernels"])
    assert seen.index("launch") > seen.index("timeline")
    assert seen.index("tiny_kernels") > seen.index("launch")


def test_the_error_first_in_registry_order_is_raised_and_both_lanes_stop() -> None:
    position = {i: n for n, i in enumerate(["summary", "timeline", "launch", "gaps", "tiny",
                                            "nvtx"])}
    ran: list[str] = []

    def step(analysis: SimpleNamespace) -> None:
        ran.append(analysis.id)
        if analysis.id == "launch":
            time.sleep(0.05)
            raise ValueError("side")
        if analysis.id == "gaps":
            time.sleep(0.1)
            raise KeyError("main")

    with pytest.raises(ValueError, match="side"):
        lanes.run_two_lanes(_fake("summary", "timeline", "gaps", "nvtx"),
                            _fake("launch", "tiny"), step, position)
    assert "tiny" not in ran and "nvtx" not in ran
    assert not [t for t in threading.enumerate() if t.name == "infraprof-side-lane"]


def test_a_main_lane_error_is_raised_once_the_side_lane_stopped() -> None:
    started, done = threading.Event(), threading.Event()

    def step(analysis: SimpleNamespace) -> None:
        if analysis.id == "launch":
            started.set()
            time.sleep(0.1)
            done.set()
        if analysis.id == "attribution":
            assert started.wait(5)
            raise RuntimeError("main lane")

    with pytest.raises(RuntimeError, match="main lane"):
        lanes.run_two_lanes(_fake("timeline", "attribution"), _fake("launch", "tiny"), step,
                            {"timeline": 0, "attribution": 1, "launch": 2, "tiny": 3})
    assert done.is_set()  # joined: the side lane's running step had finished


def test_budget_rule() -> None:
    trace = load_input(SAMPLE_TRACES / "demo_host_stall.sqlite", use_cache=False).trace
    need = lanes.BASE_BYTES + lanes.BYTES_PER_TABLE_BYTE * lanes.table_bytes(trace)
    assert 0 < lanes.table_bytes(trace) < 10**6
    assert lanes.side_lane_fits(trace, budget=int(need) + 1, cores=2, available=10**12)
    assert not lanes.side_lane_fits(trace, budget=int(need) - 1, cores=2, available=10**12)
    assert not lanes.side_lane_fits(trace, budget=10**12, cores=1, available=10**12)
    assert not lanes.side_lane_fits(trace, budget=10**12, cores=2, available=int(need))
    assert lanes.side_lane_fits(trace, budget=10**12, cores=2, available=2 * int(need) + 2)
    assert not lanes.side_lane_fits(trace, budget=0, cores=8, available=10**12)


def test_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lanes.BUDGET_ENV, raising=False)
    assert lanes.memory_budget() == lanes.DEFAULT_BUDGET
    monkeypatch.setenv(lanes.BUDGET_ENV, "4GiB")
    assert lanes.memory_budget() == 4 * 2**30
    monkeypatch.setenv(lanes.BUDGET_ENV, "0")
    assert lanes.memory_budget() == 0
    monkeypatch.setenv(lanes.BUDGET_ENV, "plenty")
    with pytest.raises(UsageError, match=lanes.BUDGET_ENV):
        lanes.memory_budget()


def test_a_bad_budget_is_a_usage_error_on_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(lanes.BUDGET_ENV, "plenty")
    monkeypatch.setenv("INFRAPROF_RESULT_CACHE", "0")
    code, out, err = run_main(["analyze", str(SAMPLE_TRACES / "demo_host_stall.sqlite"),
                               "-f", "json", "--no-cache"], monkeypatch, capsys)
    assert code == 2 and not out
    assert err.count("\n") == 1 and err.startswith("infraprof: error: ")
    assert lanes.BUDGET_ENV in err and "8GiB" in err


def test_shared_value_is_computed_once_when_threads_ask_at_once() -> None:
    calls: list[int] = []

    class Holder:
        @shared_value
        def table(self) -> list[int]:
            calls.append(1)
            time.sleep(0.05)
            return [len(calls)]

    holder = Holder()
    seen: list[list[int]] = []
    threads = [threading.Thread(target=lambda: seen.append(holder.table)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and all(value is seen[0] for value in seen)
    holder.__dict__.pop("table")  # released: the next read computes it again
    assert holder.table == [2] and len(calls) == 2
    assert isinstance(Holder.__dict__["table"], shared_value)


def test_library_lanes_and_early_budget_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """``infraprof.analyze(lanes=...)`` gives the same report both ways; a malformed budget
    is refused before the trace is read (the reader is never called)."""
    import infraprof
    from infraprof import inputs

    path = SAMPLE_TRACES / "demo_sync_heavy.sqlite"
    one = infraprof.analyze(path, use_cache=False, lanes=1).to_dict()
    assert infraprof.analyze(path, use_cache=False, lanes=2).to_dict() == one
    monkeypatch.setenv(lanes.BUDGET_ENV, "lots")

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError("read before the budget was checked")

    monkeypatch.setattr(inputs, "load_input", unexpected)
    with pytest.raises(UsageError, match=lanes.BUDGET_ENV):
        infraprof.analyze(path, use_cache=False)


def test_progress_names_the_running_steps() -> None:
    """One lane: one ``Analysing: id`` per analysis, in registry order; two lanes: both
    running steps are named while they overlap."""
    from infraprof.analyses.context import AnalysisContext

    said: list[str] = []
    running = lanes.RunningSteps(said.append)
    with running.step("gaps"), running.step("tiny_kernels"):
        pass
    assert said == ["Analysing: gaps", "Analysing: gaps, tiny_kernels", "Analysing: gaps"]
    lanes.RunningSteps(None).step("quiet").__enter__()  # no callback: nothing to do

    trace = load_input(SAMPLE_TRACES / "demo_host_stall.sqlite", use_cache=False).trace
    said.clear()
    ctx = AnalysisContext(trace)
    run_analyses(ctx, progress=said.append, lanes=1)
    assert said == [f"Analysing: {key}" for key in ctx.outputs]
    said.clear()
    run_analyses(AnalysisContext(trace), progress=said.append, lanes=2)
    named = [text.removeprefix("Analysing: ").split(", ") for text in said]
    assert {name for names in named for name in names} == set(ctx.outputs)
    assert all(1 <= len(names) <= 2 for names in named)


def test_an_error_on_the_side_lane_is_the_commands_error(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An input error raised by a side-lane analysis ends ``analyze`` as on one thread: one
    ``infraprof: error:`` line and exit 3."""
    import dataclasses

    from infraprof.analyses import registry
    from infraprof.errors import InputError

    threads: list[str] = []

    def broken(ctx: object, params: object) -> None:
        threads.append(threading.current_thread().name)
        raise InputError("trace.sqlite: table KERNEL: column start is not an integer")

    patched = tuple(dataclasses.replace(a, run=broken) if a.id == "tiny_kernels" else a
                    for a in registry.ANALYSES)
    monkeypatch.setattr(registry, "ANALYSES", patched)
    monkeypatch.setenv("INFRAPROF_RESULT_CACHE", "0")
    monkeypatch.setenv(lanes.BUDGET_ENV, "8GiB")
    monkeypatch.setattr(lanes, "usable_cores", lambda: 2)
    code, out, err = run_main(["analyze", str(SAMPLE_TRACES / "demo_host_stall.sqlite"),
                               "-f", "json", "--no-cache"], monkeypatch, capsys)
    assert code == 3 and not out
    assert err.startswith("infraprof: error: ") and err.count("\n") == 1
    assert "column start" in err
    assert threads == ["infraprof-side-lane"]
    assert not [t for t in threading.enumerate() if t.name == "infraprof-side-lane"]
