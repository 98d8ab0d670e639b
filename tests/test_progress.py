"""Progress of ``infraprof analyze`` on stderr: a status line when stderr is a terminal (a
pseudo-terminal here), none with ``--quiet`` or when stderr is not a terminal; the report on
stdout is the same either way."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

from conftest import ROOT

SAMPLE = ROOT / "sample_traces" / "demo_host_stall.sqlite"
# The status line normally appears after PROGRESS_DELAY_S (2 s); this sample takes less, so
# the runs below set the delay to 0 before calling the CLI's entry point.
RUN = ("import importlib, sys; "
       "importlib.import_module('infraprof.cli.progress').PROGRESS_DELAY_S = 0.0; "
       "from infraprof.cli import main; sys.argv = ['infraprof', *sys.argv[1:]]; main()")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color",
            "INFRAPROF_CACHE_DIR": str(tmp_path / "cache")}


def _analyze_tty(argv: list[str], tmp_path: Path, command: str = "analyze"
                 ) -> tuple[int, bytes, str]:
    """Run ``command`` with stderr on a pseudo-terminal: (exit code, stdout, terminal text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", RUN, command, *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=_env(tmp_path), cwd=ROOT)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    argv = [str(SAMPLE), "-f", "json", "--no-cache"]
    code, out, terminal = _analyze_tty(argv, tmp_path)
    assert code == 0
    assert "Analysing" in terminal or "Reading" in terminal, terminal
    quiet_code, quiet_out, quiet_terminal = _analyze_tty([*argv, "--quiet"], tmp_path)
    assert quiet_code == 0 and quiet_out == out
    assert "Analysing" not in quiet_terminal and "Reading" not in quiet_terminal
    piped = subprocess.run([sys.executable, "-c", RUN, "analyze", *argv], capture_output=True,
                           env=_env(tmp_path), cwd=ROOT, timeout=120, check=False)
    assert piped.returncode == 0 and piped.stdout == out
    assert piped.stderr == b""



def test_export_progress_on_a_terminal_only(tmp_path: Path) -> None:
    """``export`` shows the same progress line (reading, analysing, writing) and ``--quiet``
    turns it off; the file written is the same."""
    loud, quiet = tmp_path / "loud.perfetto-trace", tmp_path / "quiet.perfetto-trace"
    code, _, terminal = _analyze_tty([str(SAMPLE), "-o", str(loud)], tmp_path, "export")
    assert code == 0
    assert "Writing the Perfetto trace" in terminal, terminal
    code, _, quiet_terminal = _analyze_tty([str(SAMPLE), "-o", str(quiet), "-q"], tmp_path,
                                           "export")
    assert code == 0 and "Writing" not in quiet_terminal and "Reading" not in quiet_terminal
    assert "infraprof: wrote" in quiet_terminal
    assert loud.read_bytes() == quiet.read_bytes()
