"""``infraprof --help``/``--version`` stay fast: no heavy module is imported until a command
runs (issue 10, item 6), and every subcommand's ``--help`` still works."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from helpers_cli import run_main

HEAVY = ("pandas", "numpy", "scipy", "plotly", "sqlite_utils", "ncu_report", "pyarrow",
         "nanoarrow", "adbc_driver_manager", "adbc_driver_sqlite")
SUBCOMMANDS = [["analyze"], ["capture"], ["compare"], ["gate"], ["export"], ["baseline"],
               ["baseline", "save"], ["baseline", "list"], ["baseline", "show"]]


def _imported_modules(argv: list[str]) -> tuple[int, set[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "infraprof", *argv],
                          capture_output=True, text=True, env=env, timeout=120, check=False,
                          cwd=ROOT)
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")}
    assert "infraprof.cli" in names, proc.stderr[-2000:]
    return proc.returncode, names


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["analyze", "--help"]],
                         ids=" ".join)
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    code, names = _imported_modules(argv)
    assert code == 0
    heavy = sorted(n for n in names if n.split(".")[0] in HEAVY)
    assert not heavy, f"`infraprof {' '.join(argv)}` imported {heavy[:10]}"


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_subcommand_help(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    result = run_main([*argv, "--help"], monkeypatch, capsys)
    assert result.code == 0, result.stderr
    assert "Usage:" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("name", ["analyze", "capture", "compare", "gate", "baseline",
                                  "export", "config", "cache"])
def test_a_named_command_alone_behaves_as_in_the_whole_app(name: str) -> None:
    """`main` builds only the command it is asked for; its help (and so its options) is the
    same as in the application with every command."""
    from typer.testing import CliRunner

    from infraprof.cli import app, build_app

    runner = CliRunner()
    whole = runner.invoke(app, [name, "--help"], prog_name="infraprof", terminal_width=100)
    alone = runner.invoke(build_app(name), [name, "--help"], prog_name="infraprof",
                          terminal_width=100)
    assert whole.exit_code == alone.exit_code == 0
    assert alone.output == whole.output and f"infraprof {name}" in alone.output


def test_every_command_is_listed_in_the_whole_app() -> None:
    from typer.main import get_command

    from infraprof.cli import COMMANDS, app

    group = get_command(app)
    assert sorted(group.commands) == sorted(COMMANDS)  # type: ignore[attr-defined]
