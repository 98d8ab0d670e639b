"""`infraprof capture` under real programs, with the real nsys (CPU-only: `--trace=osrt,nvtx`):
the collector watchdog on the real command line, children that outlive the app, an app that
ignores SIGTERM, wrapper interpreters (a pyenv-style shim), a full disk during the export, two
captures into one folder at once. Each case runs a few seconds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infraprof
from infraprof.capture.ptree import alive, find_collectors

pytestmark = pytest.mark.nsys

PY = sys.executable
CPU_ONLY = "--nsys-arg=--trace=osrt,nvtx"
GRACE_S = "1"

HOT_APP = """\
import time
def hot_loop(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n
for _ in range(4):
    hot_loop(0.3)
    time.sleep(0.1)
"""


def _env(nsys_bin: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, INFRAPROF_NSYS=nsys_bin, INFRAPROF_NSYS_FINALIZE_TIMEOUT_S="60",
               INFRAPROF_STOP_GRACE_S=GRACE_S, **extra)
    env.pop("CI", None)
    return env


def _capture(nsys_bin: str, out: Path, args: list[str], timeout: float = 120, **extra: str
             ) -> subprocess.CompletedProcess[str]:
    """``infraprof capture -o out ARGS``, once more when nsys itself failed to start the app
    (nsys 2022.4 rarely stops with "End of file" before the app runs on a busy machine)."""
    for attempt in range(2):
        if attempt:
            shutil.rmtree(out, ignore_errors=True)
        run = subprocess.run([PY, "-m", "infraprof", "capture", "-o", str(out), CPU_ONLY,
                              *args], env=_env(nsys_bin, **extra), capture_output=True,
                             text=True, timeout=timeout)
        if not (run.returncode == 4 and "error: nsys failed" in run.stderr):
            break
    return run


def _ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("infraprof:")]


def _manifest(folder: Path) -> dict[str, object]:
    data = json.loads((folder / "manifest.json").read_text())
    assert isinstance(data, dict)
    return data


def test_watchdog_finds_the_real_collector(nsys_bin: str, tmp_path: Path) -> None:
    """nsys 2022.4's collector command line continues after --session-name (--shm-name=…)."""
    proc = subprocess.Popen([nsys_bin, "profile", "--trace=osrt", "--sample=none",
                             "--cpuctxsw=none", f"--output={tmp_path / 'r'}", PY, "-c",
                             "import time; time.sleep(3)"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found: list[tuple[int, str]] = []
        deadline = time.monotonic() + 30
        while not found and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            found = find_collectors(proc.pid)
        assert found, "the real collector was not found"  # (it may have forked helpers)
        assert all("--start-agent" in cmd and f"-{proc.pid} --shm-name=" in cmd
                   for _, cmd in found)
        assert not find_collectors(proc.pid + 100_000)
    finally:
        proc.wait(timeout=120)


def test_children_left_running_are_stopped_and_the_report_kept(nsys_bin: str,
                                                               tmp_path: Path) -> None:
    app = tmp_path / "leave.py"
    app.write_text("import subprocess, sys\n"
                   "child = subprocess.Popen([sys.executable, '-c', "
                   "'import time; time.sleep(150)', 'leftover-marker'])\n"
                   f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n")
    start = time.monotonic()
    run = _capture(nsys_bin, tmp_path / "c", ["--no-pyspy", "--", PY, str(app)])
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - start < 100  # nsys alone would wait the child's 150 s
    child = int((tmp_path / "child.pid").read_text())
    assert not alive(child)
    assert (tmp_path / "c" / "report.nsys-rep").is_file()
    assert (tmp_path / "c" / "report.sqlite").is_file()
    stopped = _manifest(tmp_path / "c")["stopped_processes"]
    assert isinstance(stopped, list) and len(stopped) == 1
    assert stopped[0]["pid"] == child and stopped[0]["reason"] == "left-running"
    assert "leftover-marker" in stopped[0]["command"]
    said = [line for line in _ours(run.stderr) if "left 1 process running" in line]
    assert len(said) == 1 and f"pid {child}" in said[0]


def test_app_ignoring_sigterm_is_killed_after_the_grace_period(nsys_bin: str,
                                                               tmp_path: Path) -> None:
    app = tmp_path / "stubborn.py"
    app.write_text("import os, signal, time\n"
                   "for s in (signal.SIGINT, signal.SIGTERM):\n"
                   "    signal.signal(s, signal.SIG_IGN)\n"
                   f"open({str(tmp_path / 'app.pid')!r}, 'w').write(str(os.getpid()))\n"
                   "time.sleep(150)\n")
    start = time.monotonic()
    run = _capture(nsys_bin, tmp_path / "c", ["--no-pyspy", "--timeout", "2", "--", PY,
                                              str(app)])
    assert time.monotonic() - start < 100
    assert (tmp_path / "c" / "report.nsys-rep").is_file(), run.stderr
    assert not alive(int((tmp_path / "app.pid").read_text()))
    m = _manifest(tmp_path / "c")
    assert m["timed_out"] is True
    stopped = m["stopped_processes"]
    assert isinstance(stopped, list) and [s["signal"] for s in stopped] == ["SIGKILL"]
    assert stopped[0]["reason"] in ("ignored-stop", "still-running")


@pytest.mark.parametrize("how", ["shim-script", "real-script", "shim-c", "env-shim"])
def test_wrapper_interpreter_yields_python_frames(nsys_bin: str, tmp_path: Path,
                                                  how: str) -> None:
    """`python3` as a pyenv-style shim (a shell script that execs the interpreter, slowly, as
    pyenv does), also behind `env`, and the real interpreter path all give py-spy samples of
    the hot function."""
    real = os.path.realpath(PY)
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text(f'#!/bin/sh\nsleep 0.5\nexec {real} "$@"\n')
    (shims / "python3").chmod(0o755)
    app = tmp_path / "hot.py"
    app.write_text(HOT_APP)
    env = {"PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = {"shim-script": ["python3", str(app)], "real-script": [real, str(app)],
            "shim-c": ["python3", "-c", HOT_APP],
            "env-shim": ["env", "python3", str(app)]}[how]
    run = _capture(nsys_bin, tmp_path / "c", ["--", *argv], **env)
    assert run.returncode == 0, run.stderr
    assert "Stack backtrace" not in run.stderr and "py-spy failed" not in run.stderr
    raw = (tmp_path / "c" / "pyspy.raw.txt").read_text()
    hot = sum(int(line.rsplit(" ", 1)[1]) for line in raw.splitlines() if "hot_loop" in line)
    assert hot >= 100, raw[:2000]  # ~1.2 s in hot_loop at 500 Hz
    pyspy = _manifest(tmp_path / "c")["pyspy"]
    assert isinstance(pyspy, dict) and os.path.basename(str(pyspy["exe"])).startswith("python")
    assert os.path.realpath(str(pyspy["exe"])) == os.path.realpath(real)
    # the CPU-only capture's report names the hot function (~75 % of the run) however the
    # interpreter was launched (issue 13: host.profile)
    report = infraprof.analyze(tmp_path / "c").to_dict()
    finding = next(f for f in report["findings"] if f["id"] == "host.profile")
    assert "hot_loop()" in finding["title"], finding["title"]
    assert report["host_profile"]["hottest"]["frame"].startswith("hot_loop()")
    assert report["host_profile"]["hottest"]["share"] >= 0.5


def _full_disk_folder(tmp_path: Path, nsys_bin: str) -> tuple[Path, str, bool]:
    """A 360 KiB tmpfs (the ~200 KB report fits, its ~440 KB SQLite export does not); where
    mounting is not allowed, an nsys wrapper whose export behaves as nsys 2022.4 does on a full
    disk (exit 0, an empty file, "database or disk is full")."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=360k", "tmpfs", str(mnt)],
                             capture_output=True).returncode == 0
    if mounted:
        return mnt, nsys_bin, True
    fake = tmp_path / "nsys"
    fake.write_text(f"#!{PY}\nimport os, sys\nargs = sys.argv[1:]\n"
                    "if args[:1] == ['export']:\n"
                    "    open(args[args.index('--output') + 1], 'w').close()\n"
                    "    print('[QuadDCommon::tag_message*] = database or disk is full')\n"
                    "    sys.exit(0)\n"
                    f"os.execv({nsys_bin!r}, [{nsys_bin!r}, *args])\n")
    fake.chmod(0o755)
    return mnt, str(fake), False


def test_full_disk_during_export_keeps_the_report(nsys_bin: str, tmp_path: Path) -> None:
    mnt, nsys, mounted = _full_disk_folder(tmp_path, nsys_bin)
    try:
        run = _capture(nsys, mnt / "c", ["--no-pyspy", "--", PY, "-c", "pass"])
        assert run.returncode == 0, run.stderr
        assert (mnt / "c" / "report.nsys-rep").is_file()
        assert not (mnt / "c" / "report.sqlite").exists()
        said = [line for line in _ours(run.stderr) if "`nsys export` failed" in line]
        assert len(said) == 1 and "the disk is full" in said[0] and "retry" in said[0]
        m = _manifest(mnt / "c")
        assert m["sqlite"] is None and m["report"] == "report.nsys-rep"
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)


def test_two_captures_into_one_folder_are_refused(nsys_bin: str, tmp_path: Path) -> None:
    """The first capture's app runs until the second capture has been refused."""
    out, release = tmp_path / "c", tmp_path / "release"
    code = (f"import os, time\nend = time.time() + 90\nwhile not os.path.exists({str(release)!r})"
            " and time.time() < end:\n    time.sleep(0.05)\n")
    first = subprocess.Popen(
        [PY, "-m", "infraprof", "capture", "-o", str(out), CPU_ONLY, "--no-pyspy", "--", PY,
         "-c", code], env=_env(nsys_bin), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".infraprof-capture.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = _capture(nsys_bin, out, ["--no-pyspy", "--", PY, "-c", "print('second')"])
        release.touch()
        _, first_err = first.communicate(timeout=120)
    finally:
        release.touch()
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2
    assert _ours(second.stderr) == [line for line in second.stderr.splitlines() if line]
    assert len(_ours(second.stderr)) == 1 and "another infraprof capture" in second.stderr
    assert first.returncode == 0, first_err
    m = _manifest(out)
    assert m["command"] == [PY, "-c", code] and "second" not in first_err
    assert m["report"] == "report.nsys-rep" and not (out / ".infraprof-capture.lock").exists()
