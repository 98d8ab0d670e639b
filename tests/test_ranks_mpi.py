"""Issue 15: the rank of an MPI process from nsys's MPI tracing.

``nsys profile --trace=mpi`` names the thread that calls ``MPI_Init`` ``MPI Rank <N>`` (an NVTX
thread name in the ``MPI`` domain, exported to ``ThreadNames``). The real MPI+CUDA export
``pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite`` (nsys 2022.2, rank 0 of 2) has it; the
copies below change only that name (rank 1) or add a second process with its own ``MPI Rank 1``
thread, so the expected rank of every unit is known from the SQL that made it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import infraprof
from infraprof.model.processes import MPI_RANK_SOURCE

SAXPY = "pipit-saxpy-mpi/saxpy-mpi-cuda_nsys_perlmutter0.sqlite"
SAXPY_PID = 1230493
OTHER_PID = 1000  # below SAXPY_PID: pid order would make it rank 0
PID_MASK = 0xFFFFFF << 24


def _copy(shared: Path, target: Path) -> Path:
    shutil.copyfile(shared / SAXPY, target)
    target.chmod(0o644)
    return target


def _thread_names(db_path: Path) -> dict[int, str]:
    """Oracle: pid → ``MPI Rank`` thread name, straight from the export."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT t.globalTid, s.value FROM ThreadNames t JOIN StringIds s ON "
                          "s.id = t.nameId WHERE s.value LIKE 'MPI Rank %'").fetchall()
    return {(int(tid) >> 24) & 0xFFFFFF: str(name) for tid, name in rows}


def _rename_rank(db_path: Path, rank: int) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE StringIds SET value = ? WHERE value LIKE 'MPI Rank %'",
                   (f"MPI Rank {rank}",))


def _add_process(db_path: Path, pid: int, name: str) -> None:
    """A second rank process: the kernels again under ``pid``, and a thread of it named
    ``name``."""
    with sqlite3.connect(db_path) as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(CUPTI_ACTIVITY_KIND_KERNEL)")]
        moved = ", ".join(f"((globalPid & ~{PID_MASK}) | ({pid} << 24))" if c == "globalPid"
                          else f'"{c}"' for c in cols)
        db.execute(f"INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL SELECT {moved} "
                   "FROM CUPTI_ACTIVITY_KIND_KERNEL")
        new_id = db.execute("SELECT max(id) + 1 FROM StringIds").fetchone()[0]
        db.execute("INSERT INTO StringIds VALUES (?, ?)", (new_id, name))
        db.execute("INSERT INTO ThreadNames (nameId, priority, globalTid) VALUES (?, 0, ?)",
                   (new_id, (pid << 24) | pid | (302119224788637 & ~(PID_MASK | 0xFFFFFF))))


@pytest.mark.realtraces
def test_mpi_rank_thread_names_order_separate_reports(shared_traces: Path,
                                                      tmp_path: Path) -> None:
    first = _copy(shared_traces, tmp_path / "a.sqlite")
    _rename_rank(first, 1)
    second = _copy(shared_traces, tmp_path / "b.sqlite")
    assert _thread_names(first) == {SAXPY_PID: "MPI Rank 1"}
    assert _thread_names(second) == {SAXPY_PID: "MPI Rank 0"}
    data = infraprof.analyze_many([first, second], jobs=1).to_dict()
    assert [(r["rank"], r["input"], r["rank_source"]) for r in data["ranks"]] == [
        (0, str(second), MPI_RANK_SOURCE), (1, str(first), MPI_RANK_SOURCE)]
    # the same rank named twice: not trusted, input order (said so)
    _rename_rank(first, 0)
    assert _thread_names(first) == {SAXPY_PID: "MPI Rank 0"}
    data = infraprof.analyze_many([first, second], jobs=1).to_dict()
    assert [(r["rank"], r["input"]) for r in data["ranks"]] == [(0, str(first)), (1, str(second))]
    assert {r["rank_source"] for r in data["ranks"]} == {
        "input order (stated ranks missing or repeated)"}


@pytest.mark.realtraces
def test_mpi_rank_thread_names_order_a_split_report(shared_traces: Path, tmp_path: Path) -> None:
    path = _copy(shared_traces, tmp_path / "both.sqlite")
    _add_process(path, OTHER_PID, "MPI Rank 1")
    assert _thread_names(path) == {SAXPY_PID: "MPI Rank 0", OTHER_PID: "MPI Rank 1"}
    data = infraprof.analyze_many([path], jobs=1).to_dict()
    assert [(r["rank"], r["pid"], r["rank_source"]) for r in data["ranks"]] == [
        (0, SAXPY_PID, MPI_RANK_SOURCE), (1, OTHER_PID, MPI_RANK_SOURCE)]
    unnamed = _copy(shared_traces, tmp_path / "unnamed.sqlite")
    _add_process(unnamed, OTHER_PID, "worker")
    data = infraprof.analyze_many([unnamed], jobs=1).to_dict()
    assert [(r["rank"], r["pid"]) for r in data["ranks"]] == [(0, OTHER_PID), (1, SAXPY_PID)]
    assert [r["rank_source"] for r in data["ranks"]] == [  # only one process states a rank
        "process order (pid) in the report",
        "process order (pid) in the report (stated ranks missing or repeated)"]
