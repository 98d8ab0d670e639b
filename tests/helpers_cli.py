"""Run the CLI in-process: ``run_main(argv, monkeypatch, capsys) -> Result``."""

from __future__ import annotations

import sys
from typing import NamedTuple

import pytest

from infraprof.cli import main


class Result(NamedTuple):
    """Exit code and captured output; unpacks as ``code, stdout, stderr``."""

    code: int
    stdout: str
    stderr: str


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> Result:
    """``infraprof ARGV`` through :func:`infraprof.cli.main`, as the console script runs it."""
    monkeypatch.setattr(sys, "argv", ["infraprof", *argv])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Result(code, out, err)
