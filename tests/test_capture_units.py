"""Capture pieces that need neither nsys nor py-spy: argv building, Python detection, the
bootstrap's `python script.py` semantics, the collector-only hang watchdog (fake nsys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infraprof.capture.folder import lock_folder, unlock_folder
from infraprof.capture.launch import (
    BOOTSTRAP,
    build_nsys_argv,
    is_python_command,
    python_launch,
)
from infraprof.capture.ptree import find_collectors
from infraprof.capture.sampler import PySpy
from infraprof.errors import UsageError

PY = sys.executable


def test_nsys_argv_defaults_and_passthrough(tmp_path: Path) -> None:
    argv = build_nsys_argv("nsys", tmp_path / "report", ["./app", "-x"])
    assert argv[:5] == ["nsys", "profile", "--trace=cuda,nvtx,osrt", "--sample=none",
                        "--cpuctxsw=none"]
    assert "--cudabacktrace=all" not in argv and argv[-2:] == ["./app", "-x"]
    sampled = build_nsys_argv("nsys", tmp_path / "r", ["a"], sample=True)
    assert {"--sample=process-tree", "--cpuctxsw=process-tree", "--cudabacktrace=all"} <= set(
        sampled)
    custom = build_nsys_argv("nsys", tmp_path / "r", ["a"], extra=["--trace=nvtx", "-y", "2"])
    assert "--trace=cuda,nvtx,osrt" not in custom and "--trace=nvtx" in custom
    assert custom.index("-y") < custom.index("a")
    with pytest.raises(UsageError):
        build_nsys_argv("nsys", tmp_path / "r", ["a"], extra=["-o", "x"])


def test_python_detection_and_launch(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/usr/bin/env python3\nprint('hi')\n")
    script.chmod(0o755)
    assert is_python_command(["python3", "a.py"]) and is_python_command(["x/app.py"])
    assert is_python_command([str(script)]) and not is_python_command(["/bin/true"])
    b = str(BOOTSTRAP)
    assert python_launch(["python3", "-u", "-X", "dev", "t.py", "1"])[0] == [
        "python3", "-u", "-X", "dev", b, "t.py", "1"]
    assert python_launch(["python", "-m", "pkg.mod", "a"])[0] == [
        "python", b, "-m", "pkg.mod", "a"]
    assert python_launch(["python", "-c", "pass"]) == (["python", "-c", "pass"], False)
    assert python_launch([str(script), "a"])[0] == ["/usr/bin/env", "python3", b, str(script),
                                                    "a"]
    assert python_launch(["app.py"])[0] == [sys.executable, b, "app.py"]


def test_python_behind_launchers() -> None:
    """`env`, `uv run`, `poetry run`, `conda run` keep the launcher; the bootstrap goes right
    before the script (its pid file then names the real interpreter even when forked)."""
    b = str(BOOTSTRAP)
    cases = {
        ("env", "FOO=1", "python3", "-u", "a.py", "x"):
            (["env", "FOO=1", "python3", "-u", b, "a.py", "x"], True),
        ("uv", "run", "--with", "rich", "python", "a.py"):
            (["uv", "run", "--with", "rich", "python", b, "a.py"], True),
        ("uv", "run", "a.py", "1"): (["uv", "run", b, "a.py", "1"], True),
        ("conda", "run", "-n", "x", "python", "-m", "m"):
            (["conda", "run", "-n", "x", "python", b, "-m", "m"], True),
        ("poetry", "run", "python", "-c", "pass"):
            (["poetry", "run", "python", "-c", "pass"], False),
    }
    for argv, expected in cases.items():
        assert is_python_command(argv) and python_launch(argv) == expected, argv
    for argv in (("poetry", "install"), ("env", "ls"), ("uv", "pip", "python")):
        assert not is_python_command(argv) and python_launch(argv) == (list(argv), False)


APP = textwrap.dedent("""\
    import sys
    print(repr((sys.argv, __name__, __file__.endswith("app.py"), sys.path[0].endswith("d"))))
    if sys.argv[1:2] == ["raise"]:
        def inner():
            raise ValueError("boom")
        inner()
    sys.exit(int(sys.argv[1]) if sys.argv[1:2] and sys.argv[1].isdigit() else 0)
""")


@pytest.mark.parametrize("args", [[], ["3"], ["raise"]])
def test_bootstrap_matches_plain_python(tmp_path: Path, args: list[str]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "app.py").write_text(APP)
    env = dict(os.environ, INFRAPROF_SYNC="0")
    plain = subprocess.run([PY, "d/app.py", *args], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=60)
    boot = subprocess.run([PY, "-m", "infraprof.capture.bootstrap", "d/app.py", *args],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert boot.returncode == plain.returncode
    assert boot.stdout == plain.stdout
    if args == ["raise"]:
        assert "capture/bootstrap.py" not in boot.stderr and "runpy" not in boot.stderr
        assert boot.stderr.splitlines()[-1] == "ValueError: boom"
        assert boot.stderr.count("File ") == plain.stderr.count("File ")


FAILING_APPS = {
    "syntax-error": "x = (\n",
    "ctrl-c": "import os, signal, time\ndef work():\n    os.kill(os.getpid(), signal.SIGINT)\n"
              "    time.sleep(5)\nwork()\n",
    "chained": "def f():\n    raise ValueError('a') from KeyError('b')\nf()\n",
}


@pytest.mark.parametrize("case", sorted(FAILING_APPS))
def test_bootstrap_tracebacks_have_no_bootstrap_frames(tmp_path: Path, case: str) -> None:
    """Same stderr and exit status as `python app.py`: a syntax error (raised inside the
    bootstrap's compile), Ctrl-C (KeyboardInterrupt ends the process by SIGINT) and chained
    exceptions."""
    app = tmp_path / "app.py"
    app.write_text(FAILING_APPS[case])
    env = dict(os.environ, INFRAPROF_SYNC="0")
    plain = subprocess.run([PY, str(app)], capture_output=True, text=True, env=env, timeout=60)
    boot = subprocess.run([PY, str(BOOTSTRAP), str(app)], capture_output=True, text=True,
                          env=env, timeout=60)
    assert "bootstrap.py" not in boot.stderr and "runpy" not in boot.stderr, boot.stderr
    assert (boot.returncode, boot.stderr) == (plain.returncode, plain.stderr)
    assert plain.returncode != 0 and plain.stderr


def test_bootstrap_module_mode_and_sync_file(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("import sys\nprint(__name__, sys.argv[1:])\nsys.exit(5)\n")
    sync = tmp_path / "sync.json"
    env = dict(os.environ, INFRAPROF_SYNC_FILE=str(sync))
    run = subprocess.run([PY, str(BOOTSTRAP), "-m", "pkg.mod", "x"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 5 and run.stdout.strip() == "__main__ ['x']"
    record = json.loads(sync.read_text())
    assert record["exit_status"] == 5 and len(record["pulses"]) == 6
    lengths = [(p["end_mono_ns"] - p["start_mono_ns"]) / 1e6 for p in record["pulses"]]
    # busy pulses last at least what was asked (15 ms, 35 ms); a loaded machine adds to them,
    # so only their order and lower bounds are asserted
    assert 10 <= lengths[0] < lengths[2] and lengths[2] >= 30
    assert int((tmp_path / "sync.json.pid").read_text()) == record["pid"]


def _sleeper(*extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PY, "-c", "import time; time.sleep(60)", *extra])


def test_find_collectors_matches_only_this_session() -> None:
    """The real nsys 2022.4 collector line continues after the session name:
    `nsys --start-agent --session-name=profile-python3-N --shm-name=quadd-create-agent-…`."""
    mine = _sleeper("--start-agent", "--session-name=profile-python3-4242",
                    "--shm-name=quadd-create-agent-61eeb55d")
    split = _sleeper("--start-agent", "--session-name", "profile-my app-4242")
    other = _sleeper("--start-agent", "--session-name=profile-app-42420", "--shm-name=x")
    no_agent = _sleeper("--session-name=profile-app-4242")
    try:
        import time

        for _ in range(100):
            if len(find_collectors(4242)) == 2:
                break
            time.sleep(0.02)
        found = find_collectors(4242)
        assert sorted(pid for pid, _ in found) == sorted([mine.pid, split.pid])
        assert any(cmd.endswith("--shm-name=quadd-create-agent-61eeb55d") for _, cmd in found)
    finally:
        for p in (mine, split, other, no_agent):
            p.kill()
            p.wait()


FAKE_NSYS = textwrap.dedent("""\
    #!{py}
    import os, subprocess, sys
    if sys.argv[1:] == ["--version"]:
        print("NVIDIA Nsight Systems version 2022.4.2.1-fake")
        sys.exit(0)
    if sys.argv[1] != "profile":
        sys.exit(1)
    args = sys.argv[2:]
    i = next(k for k, a in enumerate(args) if a.startswith("--output="))
    out, app = args[i][len("--output="):], args[i + 1:]
    collector = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                                  "--start-agent", f"--session-name=profile-app-{{os.getpid()}}",
                                  "--shm-name=quadd-create-agent-0"])
    rc = subprocess.call(app)
    collector.wait()  # the hang: only returns once the collector dies
    open(out + ".nsys-rep", "w").write("fake")
    sys.exit(rc)
""")


def test_watchdog_kills_only_the_collector_of_a_hung_nsys(tmp_path: Path) -> None:
    fake = tmp_path / "nsys"
    fake.write_text(FAKE_NSYS.format(py=PY))
    fake.chmod(0o755)
    decoy = _sleeper("--start-agent", "--session-name=profile-app-1")
    env = dict(os.environ, INFRAPROF_NSYS=str(fake), INFRAPROF_NSYS_FINALIZE_TIMEOUT_S="1.5")
    app = tmp_path / "app.py"
    app.write_text("import sys\nsys.exit(3)\n")
    try:
        run = subprocess.run(
            [PY, "-m", "infraprof", "capture", "--no-pyspy", "-o", str(tmp_path / "cap"), "--",
             PY, str(app)],
            env=env, capture_output=True, text=True, timeout=120)
        assert decoy.poll() is None, "an unrelated nsys-like process was killed"
    finally:
        decoy.kill()
        decoy.wait()
    assert run.returncode == 4, run.stderr
    err = " ".join(run.stderr.split())
    assert "did not finish" in err and "killed only this capture's collector" in err
    manifest = json.loads((tmp_path / "cap" / "manifest.json").read_text())
    assert manifest["nsys_hung"] is True and manifest["exit_code"] == 3


def test_nsys_missing_exits_4(tmp_path: Path) -> None:
    env = dict(os.environ, INFRAPROF_NSYS=str(tmp_path / "nowhere" / "nsys"), PATH="")
    run = subprocess.run([PY, "-m", "infraprof", "capture", "-o", str(tmp_path / "c"), "--",
                          PY, "-c", "pass"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 4
    assert "nsys not found" in run.stderr and "install" in run.stderr
    assert "$INFRAPROF_NSYS is" in " ".join(run.stderr.split())
    assert not (tmp_path / "c").exists()


def test_a_named_tool_is_not_replaced_by_one_on_path(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool named by its variable is that tool or none: a missing one is not replaced by
    another of the same name on PATH (an empty variable means PATH)."""
    from infraprof.capture.proc import find_tool

    on_path = tmp_path / "bin" / "py-spy"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setenv("INFRAPROF_PYSPY", str(tmp_path / "missing" / "py-spy"))
    assert find_tool("py-spy", "INFRAPROF_PYSPY") is None
    monkeypatch.setenv("INFRAPROF_PYSPY", "")
    assert find_tool("py-spy", "INFRAPROF_PYSPY") == str(on_path)
    named = tmp_path / "mine"
    named.write_text("#!/bin/sh\n")
    named.chmod(0o755)
    monkeypatch.setenv("INFRAPROF_PYSPY", str(named))
    assert find_tool("py-spy", "INFRAPROF_PYSPY") == str(named)


@pytest.mark.parametrize("program", ["./does-not-exist", "no-such-command-xyz", "missing.py"])
def test_app_not_found_is_a_usage_error_and_leaves_no_folder(tmp_path: Path,
                                                             program: str) -> None:
    fake = tmp_path / "nsys"
    fake.write_text(FAKE_NSYS.format(py=PY))
    fake.chmod(0o755)
    env = dict(os.environ, INFRAPROF_NSYS=str(fake))
    run = subprocess.run([PY, "-m", "infraprof", "capture", "-o", str(tmp_path / "out"), "--",
                          program], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("infraprof: error: ") and program in lines[0]
    assert not (tmp_path / "out").exists()


def test_folder_lock_refuses_a_second_capture_and_reuses_a_failed_one(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    fd = lock_folder(folder)
    try:
        with pytest.raises(UsageError, match=f"another infraprof capture \\(pid {os.getpid()}"):
            lock_folder(folder)
    finally:
        unlock_folder(folder, fd)
    assert list(folder.iterdir()) == []
    (folder / "manifest.json").write_text(json.dumps({"report": None, "tool_failure": "x"}))
    unlock_folder(folder, lock_folder(folder))  # a failed capture's folder is reused
    (folder / "manifest.json").write_text(json.dumps({"report": "report.nsys-rep"}))
    with pytest.raises(UsageError, match="not empty"):
        lock_folder(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


FAKE_PYSPY = """#!/bin/sh
echo "Error: Failed to find python version from target process" >&2
echo "" >&2
echo "Stack backtrace:" >&2
echo "   0: anyhow::error::<impl anyhow::Error>::msg" >&2
echo "   1: py_spy::python_process_info::get_python_version" >&2
exit 1
"""


def test_pyspy_failure_is_one_line_without_the_rust_backtrace(tmp_path: Path) -> None:
    fake = tmp_path / "py-spy"
    fake.write_text(FAKE_PYSPY)
    fake.chmod(0o755)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        spy = PySpy(str(fake), sleeper.pid, tmp_path / "out.json", 100)
        assert spy.finish() == 1 and spy.failed_early()
        message = spy.problem()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "\n" not in message and "backtrace" not in message and "anyhow" not in message
    assert f"no Python interpreter in pid {sleeper.pid} (" in message and "sleep" in message
    assert "Failed to find python version from target process" in message
    assert "sys.executable" in message  # how to fix it
