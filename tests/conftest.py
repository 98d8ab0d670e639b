"""Shared fixtures: where the shared real traces live, and whether nsys is required."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_traces import TraceFiles

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "traces"
SAMPLE_TRACES = ROOT / "sample_traces"


def nsys_required() -> bool:
    """In CI (``CI=true`` or ``INFRAPROF_REQUIRE_NSYS=1``) a missing nsys is a failure."""
    return os.environ.get("INFRAPROF_REQUIRE_NSYS") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        pytest.skip("shared traces not available (../shared/traces)")
    return SHARED_TRACES


@pytest.fixture(scope="session")
def nsys_bin() -> str:
    path = os.environ.get("INFRAPROF_NSYS") or shutil.which("nsys")
    if path is None:
        if nsys_required():
            pytest.fail("nsys is required in CI but not installed (scripts/install-nsight.sh)")
        pytest.skip("nsys not installed; run `sudo make tools` to enable these tests")
    return path


@pytest.fixture(scope="session")
def trace_files(shared_traces: Path, tmp_path_factory: pytest.TempPathFactory) -> TraceFiles:
    """Shared traces with ``.gz`` files inflated once per session (see tests/helpers_traces.py)."""
    return TraceFiles(shared_traces, tmp_path_factory.mktemp("traces"))


@pytest.fixture(scope="session")
def export_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point infraprof's report->SQLite cache at a session temp dir (``INFRAPROF_CACHE_DIR``)."""
    path = tmp_path_factory.mktemp("infraprof-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFRAPROF_CACHE_DIR", str(path))
        yield path
