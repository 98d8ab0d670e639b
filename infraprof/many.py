"""Analyse several reports at once: a map (one :func:`run_job` per input, each exactly what a
single ``infraprof analyze`` of that input produces, plus its ranks' facts) and a reduce
(:func:`~infraprof.ranking.ranks.build_many`: the per-rank table and the cross-rank findings).

The map runs in this process (one worker), in local worker processes (``forkserver`` start
method, one report per worker process, at most :func:`worker_count` at a time), or on
a Dask cluster (:func:`run_on_dask`; ``docs/scaling.md``). All three give the same result: the
per-input objects come back in input order and the reduce is the same function.

**Memory bound.** A report's analysis peaks at about :data:`BASE_BYTES` plus
:data:`BYTES_PER_INPUT_BYTE` times its file size (the SQLite export, or the report for
``.nsys-rep``; the largest nsys file of a capture folder). The pool runs at most
``budget // largest estimate`` workers (at least one): ``budget`` defaults to half the memory
available now (``/proc/meminfo`` ``MemAvailable``), and to the core count for processes.
Each worker process analyses one report and exits, so memory is returned between reports; a
worker that dies (e.g. killed by the out-of-memory killer) is an error naming its input.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from infraprof import machine
from infraprof.errors import ToolError, UsageError

if TYPE_CHECKING:
    from infraprof.analyses.ranks import RankFacts
    from infraprof.analyses.registry import AnalysisConfig
    from infraprof.ranking.ranks import ManyReport
    from infraprof.ranking.report import Report

BASE_BYTES: Final = 400 * 2**20
BYTES_PER_INPUT_BYTE: Final = 12
DASK_INSTALL: Final = ("--dask needs dask.distributed, which is not installed; install it with "
                       "`pip install 'infraprof[dask]'` (or `pip install \"dask[distributed]\"`)")
DASK_TIMEOUT_S: Final = 60


@dataclass(frozen=True)
class Job:
    """One input to analyse: its position, path, settings and cache choice (sent to workers)."""

    index: int
    path: str
    config: AnalysisConfig
    use_cache: bool = True


@dataclass(frozen=True)
class JobResult:
    """What a worker sends back: the input's ``analyze`` JSON object, its ranks' facts and the
    reader's warnings."""

    index: int
    report: dict[str, Any]
    facts: list[RankFacts]
    warnings: tuple[str, ...] = ()


def _report_rank(report: Report, pid: int | None) -> tuple[int | None, str]:
    """The rank a whole report states: Kineto ``distributedInfo``, else the rank variables of
    the environment nsys recorded for the launched process (nsys 2023.3+), else the ``MPI
    Rank <N>`` thread name of its rank process (nsys ``--trace=mpi``)."""
    from infraprof.inputs.many import capture_environment, rank_from_environment
    from infraprof.model.processes import MPI_RANK_SOURCE, mpi_ranks

    meta = report.trace.meta
    if meta.rank is not None:
        return meta.rank, "PyTorch profiler distributedInfo.rank"
    env = capture_environment(meta.sqlite_path).get(0, {})
    found = rank_from_environment(env)
    if found is not None:
        return found[0], f"{found[1]} in the capture environment"
    by_pid = mpi_ranks(report.trace)
    if pid in by_pid:
        return by_pid[pid], MPI_RANK_SOURCE
    if pid is None and len(set(by_pid.values())) == 1:
        return next(iter(by_pid.values())), MPI_RANK_SOURCE
    return None, "input order"


def job_facts(report: Report, job: Job) -> list[RankFacts]:
    """One rank per report, or one per rank process when the report holds several
    (:mod:`infraprof.model.processes`), each from its own analysis; a split process states
    its rank by its ``MPI Rank <N>`` thread name, else it is placed by pid order."""
    from infraprof.model.processes import MPI_RANK_SOURCE, mpi_ranks, process_trace, rank_pids
    from infraprof.ranking.ranks import rank_facts
    from infraprof.ranking.report import build_report

    pids = rank_pids(report.trace)
    if len(pids) < 2:
        pid = pids[0] if pids else None
        hint, source = _report_rank(report, pid)
        return [rank_facts(report, input_path=job.path, input_index=job.index,
                           pid=pid, rank_hint=hint, rank_source=source)]
    by_pid = mpi_ranks(report.trace)
    return [rank_facts(build_report(process_trace(report.trace, pid), job.config, lanes=1),
                       input_path=job.path, input_index=job.index, pid=pid,
                       rank_hint=by_pid.get(pid),
                       rank_source=(MPI_RANK_SOURCE if pid in by_pid
                                    else "process order (pid) in the report"))
            for pid in pids]


def run_job(job: Job) -> JobResult:
    """The map step: ``infraprof.analyze(job.path).to_dict()`` and the ranks' facts."""
    from infraprof import api

    # one analysis thread: the workers are sized to the cores and the memory budget already
    report = api.analyze(job.path, config=job.config, use_cache=job.use_cache, lanes=1)
    return JobResult(job.index, report.to_dict(), job_facts(report, job),
                     report.trace.meta.warnings)


def reduce_results(results: Sequence[JobResult]) -> ManyReport:
    """The reduce step: per-input objects in input order, then the cross-rank results."""
    from infraprof.ranking.ranks import build_many

    ordered = sorted(results, key=lambda r: r.index)
    return build_many([r.report for r in ordered], [f for r in ordered for f in r.facts])


def estimate_bytes(path: Path) -> int:
    """Peak memory of one report's analysis (module docstring)."""
    files = [path] if path.is_file() else [p for p in path.glob("report.*") if p.is_file()]
    size = max((p.stat().st_size for p in files), default=0)
    return BASE_BYTES + BYTES_PER_INPUT_BYTE * size


def available_bytes() -> int:
    """Memory available now (``MemAvailable``; 4 GiB when unknown)."""
    found = machine.available_bytes()
    return 4 * 2**30 if found is None else found


def worker_count(paths: Sequence[Path], jobs: int | None = None,
                 memory_budget: int | None = None) -> int:
    """Workers for ``paths``: at most ``jobs`` (default: usable cores), one per input, and
    as many as the memory budget (default half the available memory) holds."""
    cores = machine.usable_cores()
    budget = memory_budget if memory_budget is not None else available_bytes() // 2
    need = max((estimate_bytes(p) for p in paths), default=BASE_BYTES)
    return max(1, min(jobs or cores, len(paths), budget // need))


def _work(task: Callable[[Job], JobResult], job: Job, conn: Connection) -> None:
    """A worker process: run ``task(job)`` and send back ``("ok", result)`` or
    ``("error", exception)``; a worker that dies sends nothing (the parent sees EOF)."""
    try:
        reply: tuple[str, object] = ("ok", task(job))
    except Exception as exc:  # re-raised in the parent
        reply = ("error", exc)
    try:
        conn.send(reply)
    except Exception as exc:  # an exception that does not pickle
        conn.send(("error", RuntimeError(f"{type(reply[1]).__name__}: {exc}")))
    finally:
        conn.close()


def _died(job: Job, exitcode: int | None) -> ToolError:
    """The error for a worker process that ended without a reply."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        how = f"was killed by {name}"
        if -exitcode == signal.SIGKILL:
            how += " (the out-of-memory killer does this)"
    else:
        how = f"exited with status {exitcode} without a result"
    return ToolError(f"{job.path}: the worker process analysing it {how}; lower --jobs or "
                     "--memory-budget, or analyse this input alone to see why")


def _start(ctx: Any, task: Callable[[Job], JobResult], job: Job) -> tuple[Connection, Any]:
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_work, args=(task, job, send), daemon=True,
                          name=f"infraprof-{job.index}")
    process.start()
    send.close()  # the child holds the only writer: its death is EOF here
    return receive, process


def run_local(jobs: Sequence[Job], workers: int) -> ManyReport:
    """The map in this process (``workers == 1``), else at most ``workers`` worker processes
    at a time (``forkserver``; one input per process, which then exits and returns its
    memory). A worker's error is raised here; a worker that dies (a signal, ``os._exit``)
    is a :class:`ToolError` naming its input, and the other workers are stopped."""
    if workers <= 1 or len(jobs) <= 1:
        return reduce_results([run_job(j) for j in jobs])
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    task = run_job  # looked up now: tests replace it with a worker that dies
    waiting = list(jobs)
    running: dict[Connection, tuple[Job, Any]] = {}
    results: list[JobResult] = []
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                conn, process = _start(ctx, task, job)
                running[conn] = (job, process)
            for ready in wait(list(running)):
                conn = cast(Connection, ready)
                job, process = running.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError):
                    process.join()
                    raise _died(job, process.exitcode) from None
                finally:
                    conn.close()
                process.join()
                if status != "ok":
                    raise cast(BaseException, payload)
                results.append(cast(JobResult, payload))
    finally:
        for conn, (_, process) in running.items():
            process.kill()
            process.join()
            conn.close()
    return reduce_results(results)


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's own log lines (workers restarting, tasks failing) stay off stderr in this
    process while infraprof runs on it: failures are reported as one error line."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _map_reduce(client: Any, jobs: Sequence[Job], address: str,
                killed: type[Exception]) -> ManyReport:
    """One task per input, then the reduce; a task whose workers all died (``killed``:
    dask's ``KilledWorker``) is a :class:`ToolError` naming its input."""
    task = run_job  # looked up now: tests replace it with a worker that dies
    futures = client.map(task, list(jobs), pure=False)
    try:
        result: ManyReport = client.submit(reduce_results, futures, pure=False).result()
    except killed as exc:
        dead = [j.path for j, f in zip(jobs, futures, strict=True) if f.status == "error"]
        fix = "lower --jobs or --memory-budget" if address == "local" else (
            "give the workers more memory (dask worker --memory-limit)")
        raise ToolError(f"{dead[0] if dead else address}: every Dask worker that analysed it "
                        f"died (KilledWorker); {fix}, or analyse this input alone to see "
                        "why") from exc
    return result


def run_on_dask(jobs: Sequence[Job], address: str, workers: int,
                memory_budget: int | None = None) -> ManyReport:
    """The map and the reduce on a Dask cluster: ``address`` ``local`` starts a
    ``LocalCluster`` on 127.0.0.1 (``workers`` processes of one thread, no dashboard), else
    a scheduler address such as ``tcp://10.0.0.5:8786``. ``ToolError`` (exit 4) when dask is
    missing or the scheduler cannot be reached."""
    try:
        from distributed import Client, KilledWorker, LocalCluster
    except ImportError as exc:
        raise ToolError(DASK_INSTALL) from exc
    if address != "local" and "://" not in address:
        raise UsageError(f"--dask {address}: give `local` or a scheduler address such as "
                         "tcp://HOST:8786")
    cluster = None
    with _quiet_dask():
        try:
            if address == "local":
                budget = memory_budget if memory_budget is not None else available_bytes() // 2
                cluster = LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, memory_limit=max(budget // workers, BASE_BYTES),
                    silence_logs=logging.CRITICAL)
            target = cluster if cluster is not None else address
            with Client(target, timeout=DASK_TIMEOUT_S) as client:  # type: ignore[no-untyped-call]
                return _map_reduce(client, jobs, address, KilledWorker)
        except (OSError, TimeoutError) as exc:
            raise ToolError(f"--dask {address}: cannot run on the Dask cluster ({exc}); check "
                            "the scheduler address and that it is running") from exc
        finally:
            if cluster is not None:
                cluster.close()
