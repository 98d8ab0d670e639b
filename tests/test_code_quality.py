"""The quality bar as tests: ruff, mypy --strict and the import-layer contract on infraprof/.

They run the tools from the test environment's bin folder; in CI (``CI=true``) a missing tool
is a failure, elsewhere a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, nsys_required

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found is None:
        if nsys_required():
            pytest.fail(f"{name} is required in CI (pip install -e '.[dev]')")
        pytest.skip(f"{name} not installed")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    run = _run(_tool("ruff"), "check", "infraprof", "tests", "scripts")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict_clean() -> None:
    run = _run(_tool("mypy"), "--strict", "infraprof")
    assert run.returncode == 0, run.stdout + run.stderr


def test_import_layers_kept() -> None:
    run = _run(_tool("lint-imports"))
    assert run.returncode == 0, run.stdout + run.stderr


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "infraprof").rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not big, f"modules over 500 lines: {big}"


def test_no_one_letter_module_aliases() -> None:
    """Names say what they hold: ``import pandas as pd`` is the convention, ``tables as T``
    is not (modules are imported under a name of two letters or more)."""
    alias = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s+.*\bas\s+[A-Za-z_]\b", re.M)
    found = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}"
             for folder in ("infraprof", "tests", "scripts") for p in (ROOT / folder).rglob("*.py")
             for m in alias.finditer(p.read_text(encoding="utf-8"))]
    assert not found, found
