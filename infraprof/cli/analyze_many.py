"""``infraprof analyze A B C …``: several inputs (or one report holding several rank processes)
analysed as one job; see ``docs/scaling.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infraprof.cli.output import emit
from infraprof.errors import UsageError
from infraprof.units import parse_size

if TYPE_CHECKING:
    from infraprof.analyses.registry import AnalysisConfig
    from infraprof.ranking import Report
    from infraprof.ranking.ranks import ManyReport


@dataclass(frozen=True)
class ManyOptions:
    """The options that apply to several inputs."""

    jobs: int | None = None
    memory_budget: str | None = None
    dask: str | None = None
    use_cache: bool = True


def is_several(paths: Sequence[Path], options: ManyOptions) -> bool:
    """Several inputs: more than one argument, a glob or a folder of reports (a folder that is
    not a capture folder)."""
    from infraprof.inputs.many import is_capture_folder

    if len(paths) > 1:
        return True
    path = paths[0]
    if not path.exists() and set("*?[") & set(str(path)):
        return True
    return path.is_dir() and not is_capture_folder(path)


def warn_single(options: ManyOptions) -> None:
    """One ``infraprof: warning:`` line when options for several inputs come with one input
    (they are not used: one input is analysed in this process); a malformed
    ``--memory-budget`` is still a usage error."""
    import sys

    if options.memory_budget is not None:
        parse_size(options.memory_budget)
    given = [name for name, value in (("--jobs", options.jobs), ("--dask", options.dask),
                                      ("--memory-budget", options.memory_budget))
             if value is not None]
    if given:
        sys.stderr.write(f"infraprof: warning: {', '.join(given)} "
                         f"{'applies' if len(given) == 1 else 'apply'} to several inputs only; "
                         "one input is analysed in this process\n")


def _render(many: ManyReport, fmt: str, top: int) -> tuple[str, str]:
    from infraprof.render.ranks import (
        render_many_html,
        render_many_json,
        render_many_markdown,
        render_many_terminal,
    )

    if fmt == "json":
        return render_many_json(many), "json"
    if fmt in ("markdown", "md"):
        return render_many_markdown(many, top), "text"
    if fmt == "html":
        return render_many_html(many, top), "text"
    return render_many_terminal(many, top), "text"


def analyze_several(paths: Sequence[Path], config: AnalysisConfig, fmt: str,
                    output: Path | None, options: ManyOptions, ncu: Sequence[Path] = (),
                    pyspy: Path | None = None) -> None:
    """Analyse the inputs as one job and write the multi-input report."""
    from infraprof import api
    from infraprof.inputs.many import expand_inputs, protected_files
    from infraprof.outputs import refuse_inputs

    if ncu or pyspy is not None:
        raise UsageError("--ncu and --pyspy join one trace; analyse that trace alone to use "
                         "them, or drop them for several inputs")
    budget = parse_size(options.memory_budget) if options.memory_budget is not None else None
    inputs = expand_inputs(list(paths))
    protected = [*inputs, *protected_files(list(paths))]
    refuse_inputs(output, protected)
    many = api.analyze_many(inputs, config=config, jobs=options.jobs, memory_budget=budget,
                            dask=options.dask, use_cache=options.use_cache)
    _warn(many)
    text, kind = _render(many, fmt, config.top)
    emit(text, output, inputs=protected, kind=kind)  # type: ignore[arg-type]


def _warn(many: ManyReport) -> None:
    """The rows each input's reader left out, one ``infraprof: warning:`` line each, as for
    a single input."""
    from infraprof.cli.output import warn_data_quality
    from infraprof.readers.validate import DataIssue

    for report in many.reports:
        issues = [DataIssue(**issue) for issue in report.get("data_quality") or []]
        warn_data_quality(issues, Path(str(report["inputs"][0]["path"])))


def emit_split(report: Report, path: Path, config: AnalysisConfig, fmt: str,
               output: Path | None, inputs: Sequence[Path | None]) -> None:
    """For one report holding several rank processes (``is_multi_process``): write the job
    report of its ranks (its own report object is ``reports[0]``)."""
    from infraprof.many import Job, job_facts
    from infraprof.ranking.ranks import build_many

    many = build_many([report.to_dict()], job_facts(report, Job(0, str(path), config)))
    text, kind = _render(many, fmt, config.top)
    emit(text, output, inputs=inputs, kind=kind)  # type: ignore[arg-type]
