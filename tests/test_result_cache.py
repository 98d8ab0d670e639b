"""Result cache (:mod:`infraprof.result_cache`): a hit prints exactly what a fresh run prints
(``analyze -f json`` and the gate), without running the analysis or importing pandas; every
part of the key misses when it changes; damaged entries are rebuilt; the folder is bounded;
a cache that cannot be used changes nothing."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from helpers_cli import run_main

from infraprof import api, result_cache
from infraprof.gate import metrics as gate_metrics
from infraprof.inputs import load_trace

SAMPLES = ROOT / "sample_traces"
TRACE = SAMPLES / "demo_host_stall.sqlite"
OTHER = SAMPLES / "demo_sync_heavy.sqlite"


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache dir with the result cache on (conftest turns it off elsewhere)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(folder))
    monkeypatch.setenv(result_cache.ENV_SWITCH, "1")
    return folder


@pytest.fixture()
def trace(tmp_path: Path) -> Path:
    """A private copy of a sample export (the tests change its bytes and mtime)."""
    copy = tmp_path / "in" / "trace.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(TRACE, copy)
    return copy


def _no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, running an analysis fails the test: output must come from the cache."""
    monkeypatch.setattr(api, "analyze", lambda *a, **k: pytest.fail("analysed again"))
    monkeypatch.setattr(gate_metrics, "load_trace", lambda *a, **k: pytest.fail("read again"))


def test_analyze_json_hit_is_byte_identical(cache: Path, trace: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fresh = run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys)
    assert fresh.code == 0 and json.loads(fresh.stdout)["schema_version"]
    assert len(result_cache.entries()) == 1
    _no_analysis(monkeypatch)
    hit = run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys)
    assert hit == fresh
    out = tmp_path / "out.json"
    assert run_main(["analyze", str(trace), "-o", str(out)], monkeypatch, capsys).code == 0
    assert out.read_text(encoding="utf-8") == fresh.stdout


def test_warnings_are_replayed(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["infraprof: warning: 3 kernel rows without an end; left out\n"]
    module = importlib.import_module("infraprof.cli.analyze")
    monkeypatch.setattr(module, "data_quality_lines", lambda *a: lines)
    fresh = run_main(["analyze", str(TRACE), "-f", "json"], monkeypatch, capsys)
    assert fresh.stderr == lines[0]
    monkeypatch.setattr(module, "data_quality_lines", lambda *a: [])
    assert run_main(["analyze", str(TRACE), "-f", "json"], monkeypatch, capsys) == fresh


def test_gate_hit_is_byte_identical(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "-b", str(TRACE), "-c", str(OTHER), "-f", "json"]
    fresh = run_main(argv, monkeypatch, capsys)
    assert fresh.stdout.strip() and len(result_cache.entries()) == 2
    _no_analysis(monkeypatch)
    assert run_main(argv, monkeypatch, capsys) == fresh
    cached = gate_metrics.load_run(TRACE)
    fresh_run = gate_metrics.metrics_from_trace(load_trace(TRACE, all_columns=False))
    assert cached == fresh_run
    assert list(cached.values) == list(fresh_run.values)  # the order is kept too


_MODULES_AFTER_MAIN = (
    "import sys\n"
    "from infraprof.cli import main\n"
    "sys.argv = ['infraprof', *sys.argv[1:]]\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\n")


def test_hit_imports_no_numpy_or_pandas(cache: Path, trace: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", _MODULES_AFTER_MAIN, "analyze", str(trace), "-f", "json"]
    fresh = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    hit = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert fresh.returncode == hit.returncode == 0 and fresh.stdout == hit.stdout

    def imported(stderr: str) -> set[str]:
        return set(stderr.rsplit("MODULES ", 1)[-1].split())

    assert {"numpy", "pandas"} <= imported(fresh.stderr)
    # nor rich, pydantic, click or the other commands' modules (docs/performance.md, Start-up)
    assert "infraprof.cli.analyze" in imported(hit.stderr)
    assert not {"numpy", "pandas", "rich", "pydantic", "click", "infraprof.cli.capture",
                "infraprof.cli.gate", "infraprof.cli.export",
                "infraprof.readers.nsys_report"} & imported(hit.stderr)


SETTINGS = {"config_file": "(defaults)", "config": {}, "top": None, "min-impact": None,
            "disable": []}


@pytest.mark.parametrize("change", [
    {"top": 3}, {"min-impact": "2ms"}, {"disable": ["launch"]}, {"disable": ["gap.*"]},
    {"config": {"launch-latency-threshold": "5us"}}, {"config_file": "/x/infraprof.toml"},
], ids=str)
def test_any_setting_change_misses(cache: Path, trace: Path, change: dict[str, object]) -> None:
    base = result_cache.entry_key("analyze-json", trace, SETTINGS)
    assert base is not None
    assert result_cache.entry_key("analyze-json", trace, {**SETTINGS, **change}) != base


def test_input_code_and_runtime_changes_miss(cache: Path, trace: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base = result_cache.entry_key("analyze-json", trace, SETTINGS)
    assert base == result_cache.entry_key("analyze-json", trace, SETTINGS)
    assert result_cache.entry_key("gate-run", trace, SETTINGS) != base
    st = trace.stat()
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # mtime only
    touched = result_cache.entry_key("analyze-json", trace, SETTINGS)
    data = bytearray(trace.read_bytes())
    data[100] ^= 0x01  # a header byte, same size and mtime
    trace.write_bytes(bytes(data))
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    edited = result_cache.entry_key("analyze-json", trace, SETTINGS)
    assert len({base, touched, edited}) == 3
    for name, value in (("code_fingerprint", lambda: "other code"),
                        ("runtime_versions", lambda: ("other python",)),
                        ("__version__", "9.9.9")):
        with monkeypatch.context() as patch:
            patch.setattr(result_cache, name, value)
            assert result_cache.entry_key("analyze-json", trace, SETTINGS) != edited


def test_code_fingerprint_follows_the_sources(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "sub" / "a.py").write_text("x = 1\n")
    assert {p.name for p in result_cache._python_files(package)} == {"a.py"}
    fingerprint = result_cache.code_fingerprint()
    assert len(fingerprint) == 64 and fingerprint == result_cache.code_fingerprint()
    assert any("numpy" in part for part in result_cache.runtime_versions())


@pytest.mark.parametrize("make", ["folder", "not sqlite", "wal", "fifo"])
def test_inputs_that_cannot_be_keyed_are_not_cached(cache: Path, tmp_path: Path,
                                                    make: str) -> None:
    path = tmp_path / "input.sqlite"
    if make == "folder":
        path.mkdir()
    elif make == "not sqlite":
        path.write_bytes(b"{}")
    elif make == "wal":
        shutil.copyfile(TRACE, path)
        Path(f"{path}-wal").write_bytes(b"")
    else:
        os.mkfifo(path)
    assert result_cache.entry_key("analyze-json", path, SETTINGS) is None


def test_switches_turn_it_off(cache: Path, trace: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["analyze", str(trace), "-f", "json", "--no-cache"], monkeypatch,
                    capsys).code == 0
    assert not cache.exists()
    monkeypatch.setenv(result_cache.ENV_SWITCH, "off")
    assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys).code == 0
    assert result_cache.entries() == [] and (cache / "tables").is_dir()
    monkeypatch.setenv(result_cache.ENV_SWITCH, "1")
    assert run_main(["analyze", str(trace)], monkeypatch, capsys).code == 0  # table format
    assert result_cache.entries() == []


def test_damaged_entry_is_rebuilt(cache: Path, trace: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    fresh = run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys)
    entry = result_cache.entries()[0][0]
    for damage in (lambda b: b[:-1] + bytes([b[-1] ^ 1]), lambda b: b[: len(b) // 2],
                   lambda b: b"not json\n" + b, lambda b: b""):
        entry.write_bytes(damage(entry.read_bytes()))
        assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys) == fresh
        assert result_cache.entries()[0][0] == entry
        key = entry.name.removesuffix(".entry")
        loaded = result_cache.load(key)
        assert loaded is not None and loaded.body.decode() == fresh.stdout


def test_entry_that_is_a_symlink_is_not_read(cache: Path, tmp_path: Path) -> None:
    key = "k" * 64
    assert result_cache.store(key, b"body", {"stderr": ""})
    entry = result_cache.entries()[0][0]
    target = tmp_path / "elsewhere.entry"
    shutil.move(entry, target)
    entry.symlink_to(target)
    assert result_cache.load(key) is None and target.is_file()


def test_unusable_cache_dir_still_works(tmp_path: Path, trace: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(result_cache.ENV_SWITCH, "1")
    expected = run_main(["analyze", str(trace), "-f", "json", "--no-cache"], monkeypatch,
                        capsys)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(blocker))  # cannot hold folders
    assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys) == expected
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "results").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv("INFRAPROF_CACHE_DIR", str(root))
    for _ in range(2):
        assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys) == expected
    assert list(elsewhere.iterdir()) == []


def test_output_never_replaces_the_input_on_a_hit(cache: Path, trace: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys).code == 0
    before = trace.read_bytes()
    link = trace.parent / "link.json"
    link.symlink_to(trace)
    for target in (trace, link):
        code, _, err = run_main(["analyze", str(trace), "-f", "json", "-o", str(target)],
                                monkeypatch, capsys)
        assert code == 2 and "would overwrite the input" in err
    assert trace.read_bytes() == before


def test_changed_during_analysis_is_not_stored(cache: Path, trace: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    real = api.analyze

    def analyze_then_touch(*args: object, **kwargs: object) -> object:
        report = real(*args, **kwargs)  # type: ignore[arg-type]
        os.utime(trace, ns=(0, trace.stat().st_mtime_ns + 10**9))
        return report

    monkeypatch.setattr(api, "analyze", analyze_then_touch)
    assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys).code == 0
    assert result_cache.entries() == []


def test_eviction_keeps_the_bound(cache: Path) -> None:
    body = b"x" * 1000
    for i in range(6):  # entry i last used at i+1 s: the oldest go first
        assert result_cache.store(f"{i:064d}", body, max_total_bytes=3800)
        os.utime(result_cache.results_dir() / f"{i:064d}.entry", ns=(0, (i + 1) * 10**9))
        assert sum(size for _, size, _ in result_cache.entries()) <= 3800
    kept = sorted(p.name[:64] for p, _, _ in result_cache.entries())
    assert kept == [f"{i:064d}" for i in (3, 4, 5)]
    assert not result_cache.store("b" * 64, b"y" * 5000, max_total_bytes=3800)
    stale = result_cache.results_dir() / ".tmp-dead.entry"
    stale.write_bytes(b"")
    os.utime(stale, ns=(0, 0))
    assert stale in result_cache.evict(result_cache.results_dir())


def test_cache_info_and_clear(cache: Path, trace: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["analyze", str(trace), "-f", "json"], monkeypatch, capsys).code == 0
    info = run_main(["cache", "info"], monkeypatch, capsys)
    assert info.code == 0 and "analysis results: 1 entries" in info.stdout
    assert run_main(["cache", "clear"], monkeypatch, capsys).code == 0
    assert result_cache.entries() == [] and not (cache / "results").exists()
