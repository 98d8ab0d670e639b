"""Columnar cache: identical tables from the cache, damaged entries rebuilt, ``--no-cache``,
``infraprof cache info/clear``, stale export work folders removed; the bench runs (smoke)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from helpers_cli import run_main

from infraprof.readers import columnar_cache
from infraprof.readers.nsys_report import remove_stale_exports
from infraprof.readers.nsys_sqlite import read_nsys_sqlite

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "demo_host_stall.sqlite"


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(folder))
    return folder


def _assert_same(a: columnar_cache.NsysTables, b: columnar_cache.NsysTables) -> None:
    assert (a.meta, a.capture, a.session_start_utc_ns) == (b.meta, b.capture,
                                                           b.session_start_utc_ns)
    assert (a.analysis_start_ns, a.analysis_end_ns) == (b.analysis_start_ns, b.analysis_end_ns)
    assert list(a.frames) == list(b.frames)
    for name in a.frames:
        pd.testing.assert_frame_equal(a.frames[name], b.frames[name], check_exact=True)


def test_cached_tables_equal_the_export(cache: Path) -> None:
    direct = read_nsys_sqlite(SAMPLE)
    first = columnar_cache.read_nsys_cached(SAMPLE)
    entries = columnar_cache.cache_entries()
    assert len(entries) == 1 and (entries[0][0] / "columns.json").is_file()
    second = columnar_cache.read_nsys_cached(SAMPLE, read=lambda *_: pytest.fail("not cached"))
    _assert_same(direct, first)
    _assert_same(direct, second)
    assert len(second.frames["kernels"]) > 0


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


@pytest.mark.parametrize("damage", [
    _flip_last,                                  # a value changed: checksum
    lambda data: data[:-8],                      # truncated
    lambda data: data + b"\0" * 8,               # longer than its header says
    lambda data: b"\x00NUMPY" + data[6:],        # not an .npy file
    lambda data: data[:8] + b"\xff" + data[9:],  # header damaged
    lambda data: data.replace(b"(", b"(99999999999", 1).replace(  # a huge shape, same size
        b" " * 11 + b"\n", b"\n", 1),
], ids=["value", "truncated", "longer", "magic", "header", "shape"])
def test_damaged_entry_is_rebuilt(cache: Path, damage: Callable[[bytes], bytes]) -> None:
    columnar_cache.read_nsys_cached(SAMPLE)
    entry = columnar_cache.cache_entries()[0][0]
    victim = entry / "kernels.0.npy"
    victim.write_bytes(damage(victim.read_bytes()))
    calls = []

    def read(path: Path, callchains: bool, all_columns: bool) -> columnar_cache.NsysTables:
        calls.append(path)
        return read_nsys_sqlite(path, callchains, all_columns)

    rebuilt = columnar_cache.read_nsys_cached(SAMPLE, read=read)
    assert calls == [SAMPLE]
    _assert_same(read_nsys_sqlite(SAMPLE), rebuilt)
    assert columnar_cache.load_entry(entry, SAMPLE) is not None


def test_cache_serves_only_columns_it_holds(cache: Path) -> None:
    """An analysis read (``all_columns=False``) caches what it read; a later ``all_columns``
    read must read the export again (never return missing columns), and its entry then
    serves analysis reads with exactly the columns a direct analysis read has."""
    lean = read_nsys_sqlite(SAMPLE, all_columns=False)
    full = read_nsys_sqlite(SAMPLE)
    omitted = {"context_id", "mangled_name", "grid_x", "registers_per_thread"}
    assert not omitted & set(lean.frames["kernels"].columns)
    assert omitted <= set(full.frames["kernels"].columns)
    assert not {"return_value", "tid"} & set(lean.frames["api_calls"].columns)
    api = full.frames["api_calls"]
    assert api["tid"].tolist() == [int(g) & 0xFFFFFF for g in api["global_tid"].tolist()]
    _assert_same(lean, columnar_cache.read_nsys_cached(SAMPLE, all_columns=False))
    calls: list[bool] = []

    def read(path: Path, callchains: bool, all_columns: bool) -> columnar_cache.NsysTables:
        calls.append(all_columns)
        return read_nsys_sqlite(path, callchains, all_columns)

    _assert_same(full, columnar_cache.read_nsys_cached(SAMPLE, read=read))
    assert calls == [True]
    assert len(columnar_cache.cache_entries()) == 1
    never = lambda *_: pytest.fail("not cached")  # noqa: E731
    _assert_same(lean, columnar_cache.read_nsys_cached(SAMPLE, read=never, all_columns=False))
    _assert_same(full, columnar_cache.read_nsys_cached(SAMPLE, read=never))
    for name in lean.frames:
        assert list(lean.frames[name].columns) == [
            c for c in full.frames[name].columns if c in lean.frames[name].columns]


def test_no_cache_writes_nothing_and_cache_commands(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["analyze", str(SAMPLE), "-f", "json", "--no-cache"],
                            monkeypatch, capsys)
    assert code == 0 and json.loads(out)["summary"]["counts"]["kernels"] > 0
    assert not (cache / "tables").exists()
    cached = run_main(["analyze", str(SAMPLE), "-f", "json"], monkeypatch, capsys)
    assert cached.code == 0 and cached.stdout == out
    assert len(columnar_cache.cache_entries()) == 1
    info = run_main(["cache", "info"], monkeypatch, capsys)
    assert info.code == 0 and "columnar tables: 1 entries" in info.stdout
    (cache / "unrelated.txt").write_text("keep me")
    cleared = run_main(["cache", "clear"], monkeypatch, capsys)
    assert cleared.code == 0 and not (cache / "tables").exists()
    assert (cache / "unrelated.txt").read_text() == "keep me"


def test_stale_export_folders_are_removed(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = tmp_path / f"infraprof-export-{child.pid}-abc"
    alive = tmp_path / f"infraprof-export-{os.getpid()}-def"
    fresh_dead = tmp_path / f"infraprof-export-{child.pid}-ghi"
    for folder in (dead, alive, fresh_dead):
        folder.mkdir()
        (folder / "export.sqlite").write_bytes(b"partial")
    old = time.time() - 600
    os.utime(dead, (old, old))
    os.utime(alive, (old, old))
    assert remove_stale_exports(tmp_path) == [dead]
    assert alive.is_dir() and fresh_dead.is_dir()


def test_bench_smoke(tmp_path: Path) -> None:
    """``scripts/bench.py`` at a tiny size completes and prints its JSON line (no timings
    are asserted)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--kernels", "3000",
         "--source", str(ROOT / "sample_traces" / "demo_launch_bound.sqlite"),
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    line = json.loads(run.stdout.strip().splitlines()[-1])
    assert line["bench"] == "infraprof" and line["kernels"] >= 3000
    assert {"bare read", "infraprof cold", "infraprof warm",
            "infraprof warm result"} <= set(line["steps"])


def test_launch_flows_decode_the_omitted_call_thread() -> None:
    """The HTML timeline's launch arrows (``launch_flows``) come from an analysis read,
    whose API calls have no ``tid``: their ``api_tid`` is the launching call's thread, as a
    full read's merge on ``(pid, correlation_id)`` gives it."""
    from infraprof import api
    from infraprof.ranking.timeline_view import launch_flows

    report = api.analyze(SAMPLE, use_cache=False)
    assert "tid" not in report.trace.api_calls.columns
    flows = launch_flows(report)
    calls = read_nsys_sqlite(SAMPLE).frames["api_calls"].drop_duplicates(
        ["pid", "correlation_id"])
    ops = report.trace.gpu_ops()
    want = ops.merge(calls[["pid", "correlation_id", "tid"]], on=["pid", "correlation_id"])
    assert len(flows) == len(want) > 0
    assert sorted(flows["api_tid"].tolist()) == sorted(want["tid"].tolist())
    assert set(flows["api_tid"].tolist()) <= set(calls["tid"].tolist())


def test_entry_written_in_background_is_a_snapshot(cache: Path) -> None:
    """The entry is written while the caller goes on: once written (``wait_for_writes``, or
    any later cache read) it holds the frames as read, even when the caller changed a frame
    meanwhile (the writer holds copy-on-write views)."""
    direct = read_nsys_sqlite(SAMPLE)
    tables = columnar_cache.read_nsys_cached(SAMPLE)
    tables.frames["kernels"]["start_ns"] = 0  # a caller's own change, after the read
    tables.frames["kernels"].loc[0, "end_ns"] = -1  # and a value changed in place
    columnar_cache.wait_for_writes()
    assert not columnar_cache._writes
    entry = columnar_cache.cache_entries()[0][0]
    _assert_same(direct, columnar_cache.load_entry(entry, SAMPLE) or pytest.fail("no entry"))


def test_failed_background_write_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A write that fails in any way (here: a column the cache cannot hold) leaves no entry,
    no temporary folder and no message; the tables read are returned as usual."""
    real = columnar_cache._column_spec

    def failing(*args: object, **kwargs: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(columnar_cache, "_column_spec", failing)
    tables = columnar_cache.read_nsys_cached(SAMPLE)
    columnar_cache.wait_for_writes()
    assert len(tables.frames["kernels"]) > 0
    assert list((cache / "tables").iterdir()) == []
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(columnar_cache, "_column_spec", real)
    columnar_cache.read_nsys_cached(SAMPLE)
    assert len(columnar_cache.cache_entries()) == 1


def test_bench_ratios_include_the_read_floor() -> None:
    """``bench.ratios_of``: the cold run against the fastest bare read in each unit, against
    ``nsys stats``, and that bare read against ``nsys stats`` (the floor of the cold ratio)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bench
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def step(wall: float, cpu: float) -> dict[str, float]:
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": 1.0}

    results = {"bare read": step(2.0, 2.0), "bare read arrow": step(1.0, 1.2),
               "bare read arrow 2 threads": step(0.8, 1.5), "nsys stats": step(1.6, 1.5),
               "infraprof cold": step(3.2, 4.5)}
    ratios = bench.ratios_of(results)
    assert ratios["cold_vs_bare_read_wall"] == pytest.approx(4.0)
    assert ratios["cold_vs_bare_read_cpu"] == pytest.approx(3.75)
    assert ratios["bare_read_vs_nsys_stats_wall"] == pytest.approx(0.5)
    assert ratios["bare_read_vs_nsys_stats_cpu"] == pytest.approx(0.8)
    assert ratios["cold_vs_nsys_stats_cpu"] == pytest.approx(3.0)
    assert bench.ratios_of({**results, "infraprof cold": {**step(0, 0), "failed": 1}}) == {}
