"""Shared fixtures: where the shared real traces live, and whether they and nsys are required.

In CI (``CI=true`` or ``INFRAPROF_REQUIRE_NSYS=1``) the shared traces (``../shared/traces``, or
``$INFRAPROF_SHARED_TRACES``) and nsys are required: a missing one fails the run at session
start and in the fixture, instead of skipping ~180 tests silently. Elsewhere they skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_traces import ROOT, SHARED_TRACES, TraceFiles

SAMPLE_TRACES = ROOT / "sample_traces"
MISSING_TRACES = (f"shared traces not available ({SHARED_TRACES}); CI needs them: check out "
                  "the shared folder beside the repository or set INFRAPROF_SHARED_TRACES")


def nsys_required() -> bool:
    """In CI (``CI=true`` or ``INFRAPROF_REQUIRE_NSYS=1``) a missing nsys is a failure."""
    return os.environ.get("INFRAPROF_REQUIRE_NSYS") == "1" or os.environ.get("CI") == "true"


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI a missing shared-traces folder ends the run as a failure before any test runs
    (tests parametrized over the traces would otherwise collect as empty and pass)."""
    if nsys_required() and not SHARED_TRACES.is_dir():
        pytest.exit(MISSING_TRACES, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        if nsys_required():
            pytest.fail(MISSING_TRACES)
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


@pytest.fixture(autouse=True, scope="session")
def result_cache_off() -> Iterator[None]:
    """The result cache (:mod:`infraprof.result_cache`) is off in tests unless a test turns it
    on (``tests/test_result_cache.py``): many tests patch infraprof's functions in-process or
    run the same sample trace in another setting, and a patched function is not part of the
    cache key (the code fingerprint sees the files, not the process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFRAPROF_RESULT_CACHE", "0")
        yield
