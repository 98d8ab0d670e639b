"""The library API for notebooks and scripts (``docs/python-api.md``).

``infraprof.analyze(path)`` is exactly what ``infraprof analyze PATH`` runs, so
``infraprof.analyze(path).to_dict()`` equals ``infraprof analyze PATH --format json``;
``infraprof.compare(base, cand)`` is what ``infraprof compare`` runs. Errors are the CLI's:
:class:`~infraprof.errors.InputError` (bad input), :class:`~infraprof.errors.UsageError` (bad
settings), :class:`~infraprof.errors.ToolError` (nsys/ncu missing or failed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infraprof.analyses.registry import AnalysisConfig
    from infraprof.gate.verdict import GateResult
    from infraprof.ranking import Report
    from infraprof.ranking.ranks import ManyReport

PathLike = str | Path


def analysis_config(config_file: PathLike | None = None, *, disable: Sequence[str] = (),
                    settings: Mapping[str, Any] | None = None) -> AnalysisConfig:
    """Defaults, then the config file (``config_file`` or the nearest ``infraprof.toml`` /
    ``pyproject.toml`` with ``[tool.infraprof]``), then ``settings`` (keys as in the file,
    e.g. ``{"launch-latency-threshold": "2ms", "top": 5}``) and ``disable``."""
    from infraprof.analyses.registry import build_config
    from infraprof.config import load_config_file

    found = load_config_file(Path(config_file) if config_file is not None else None)
    given = {str(k).replace("_", "-"): v for k, v in (settings or {}).items()}
    given["disable"] = list(disable) or None
    return build_config(found.analysis, found.source, given)


def analyze(path: PathLike, *, ncu: Sequence[PathLike] = (), pyspy: PathLike | None = None,
            config: AnalysisConfig | None = None, disable: Sequence[str] = (),
            settings: Mapping[str, Any] | None = None,
            progress: Callable[[str], None] | None = None, use_cache: bool = True,
            all_columns: bool = False, lanes: int | None = None) -> Report:
    """Analyze one capture (an nsys SQLite export, ``.nsys-rep``/``.qdrep`` report, capture
    folder or PyTorch profiler trace ``*.pt.trace.json[.gz]``) into a
    :class:`~infraprof.ranking.Report`: ``.findings`` (ranked),
    ``.kernels``, ``.api_calls``, ``.memcpy``, ``.nvtx`` (pandas DataFrames), ``.to_dict()``.

    ``ncu``: Nsight Compute reports to join (a capture folder's own ``*.ncu-rep`` are used when
    none are given); ``pyspy``: a py-spy output (found automatically in capture folders);
    ``config``: settings from :func:`analysis_config` (else built from the nearest config
    file, ``settings`` and ``disable``); ``progress``: called with a status line per step;
    ``use_cache``: read through infraprof's columnar cache of the export (default on);
    ``all_columns``: ``report.trace`` holds every column of the normalized tables (default:
    only those the analyses read, see :data:`infraprof.tables.ANALYSIS_OMITS`; with Nsight
    Compute reports the kernels' launch configuration is always read); ``lanes``: analysis
    threads, 1 or 2 (default: 2 when the trace's memory estimate fits
    ``INFRAPROF_MEMORY_BUDGET``, checked before the trace is read; the same report either
    way, :mod:`infraprof.analyses.lanes`)."""
    from infraprof.analyses.lanes import memory_budget
    from infraprof.inputs import CaptureFolder, load_input, load_ncu, pyspy_for
    from infraprof.memory import heap_allocations
    from infraprof.ranking import build_report
    from infraprof.readers.columnar_cache import wait_for_writes

    source = Path(path)
    if lanes is None:
        memory_budget()  # a malformed INFRAPROF_MEMORY_BUDGET: a usage error before the read
    if config is None:
        config = analysis_config(disable=disable, settings=settings)
    if pyspy is None and not ncu and _is_pyspy_profile(source):
        return _pyspy_alone(source, config)
    reports = [Path(p) for p in ncu] or (
        CaptureFolder(source).ncu_reports() if source.is_dir() else [])
    with heap_allocations():
        loaded = load_input(source, progress, use_cache=use_cache,
                            all_columns=all_columns or bool(reports))
        trace = loaded.trace
        metrics = [load_ncu(p) for p in reports]
        aligned = loaded.python if pyspy is None and loaded.python is not None else pyspy_for(
            source, Path(pyspy) if pyspy is not None else None, trace.nvtx,
            trace.meta.session_start_utc_ns)
        report = build_report(trace, config, pyspy=aligned, ncu=metrics, progress=progress,
                              lanes=lanes)
    wait_for_writes()  # the columnar cache entry the read started writing is complete
    return report


def analyze_many(paths: PathLike | Sequence[PathLike], *, config: AnalysisConfig | None = None,
                 disable: Sequence[str] = (), settings: Mapping[str, Any] | None = None,
                 jobs: int | None = None, memory_budget: int | None = None,
                 dask: str | None = None, use_cache: bool = True) -> ManyReport:
    """Analyse several reports as one job, as ``infraprof analyze A B C …`` does: ``paths``
    are reports, exports, capture folders, folders of reports or globs (``docs/scaling.md``).
    Returns a :class:`~infraprof.ranking.ranks.ManyReport`: ``.reports`` (one
    :meth:`Report.to_dict` per input, in order), ``.ranks`` (per-rank rows), ``.findings``
    (cross-rank, by impact) and ``.to_dict()`` (the CLI's JSON).

    ``jobs``: most worker processes (default: the usable cores); ``memory_budget``: bytes the
    workers may use together (default half the available memory); ``dask``: ``"local"`` (a
    ``LocalCluster`` on 127.0.0.1) or a scheduler address ``tcp://HOST:PORT`` to run on
    instead of the local pool (``ToolError`` when dask is not installed). A worker process
    that dies without a result (a signal such as the out-of-memory killer's SIGKILL) is a
    ``ToolError`` naming the input it was analysing; more than 4,096 inputs, or a folder of
    more than 65,536 entries, an ``InputError`` before any report is opened."""
    from infraprof import many
    from infraprof.inputs import TRACE_KINDS, check_kind
    from infraprof.inputs.many import expand_inputs

    given = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    inputs = expand_inputs(given)
    for source in inputs:
        check_kind(source, TRACE_KINDS, "an nsys report, its SQLite export, a capture folder "
                   "or a PyTorch profiler trace")
    if config is None:
        config = analysis_config(disable=disable, settings=settings)
    job_list = [many.Job(i, str(p), config, use_cache) for i, p in enumerate(inputs)]
    workers = many.worker_count(inputs, jobs, memory_budget)
    if dask is not None:
        return many.run_on_dask(job_list, dask, workers, memory_budget)
    return many.run_local(job_list, workers)


def _is_pyspy_profile(path: Path) -> bool:
    from infraprof.inputs import PYSPY_KINDS, detect

    return path.is_file() and detect(path) in PYSPY_KINDS


def _pyspy_alone(path: Path, config: AnalysisConfig) -> Report:
    """The report of a py-spy profile given alone: no trace to correlate with, so the host CPU
    profile (and its ``host.profile`` finding) is the report."""
    from infraprof.inputs import load_pyspy
    from infraprof.model.clock import AlignedPyspy
    from infraprof.model.trace import Trace, TraceMeta
    from infraprof.ranking import build_report

    profile = load_pyspy(path)
    note = "py-spy profile analysed alone: no nsys trace to correlate with"
    aligned = AlignedPyspy(profile, None, None, (*profile.notes, note))
    return build_report(Trace(TraceMeta(source=str(path), sqlite_path="")), config,
                        pyspy=aligned)


def compare(base: PathLike | Sequence[PathLike], cand: PathLike | Sequence[PathLike], *,
            config_file: PathLike | None = None,
            settings: Mapping[str, Any] | None = None) -> GateResult:
    """Compare baseline run(s) with candidate run(s) as ``infraprof compare`` does; each run
    is a capture folder (``capture --repeat`` folders stand for their runs), report, SQLite
    export, analyze JSON or gate metrics JSON. ``settings``: gate policy keys (as in
    ``[tool.infraprof.gate]``). The result has ``.failed``, ``.results`` and ``.to_dict()``."""
    from infraprof.gate.metrics import load_side
    from infraprof.gate.policy import load_policy
    from infraprof.gate.verdict import compare as compare_runs

    policy = load_policy(Path(config_file) if config_file is not None else None,
                         overrides=dict(settings or {}) or None)
    base_runs = load_side(_paths(base), policy.step, "baseline")
    cand_runs = load_side(_paths(cand), policy.step, "candidate")
    return compare_runs(base_runs, cand_runs, policy)


def _paths(value: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]
