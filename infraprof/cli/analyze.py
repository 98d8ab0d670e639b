"""``infraprof analyze``: summaries and ranked findings for one capture."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NamedTuple

import typer

from infraprof.cli.output import (
    TextKind,
    color_wanted,
    data_quality_lines,
    emit,
    warning_lines,
)
from infraprof.cli.progress import progress_line, progress_wanted

if TYPE_CHECKING:

    from infraprof.analyses.registry import AnalysisConfig
    from infraprof.ranking import Report

# Heavy modules (pandas, the analyses, the renderers) are imported inside the command so that
# `infraprof --help` stays fast.


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    md = "md"
    html = "html"


_SUFFIX_FORMATS = {".json": OutputFormat.json, ".txt": OutputFormat.table,
                   ".md": OutputFormat.markdown, ".html": OutputFormat.html}


def _terminal_width() -> int:
    """The width rich sees for stdout (columns)."""
    from rich.console import Console

    return Console().width


def _analyze_ncu(path: Path, fmt: OutputFormat, output: Path | None, width: int | None,
                 top: int) -> None:
    from infraprof.analyses.ncu_kernels import diagnose
    from infraprof.inputs import load_ncu
    from infraprof.render.ncu import render_ncu_json, render_ncu_terminal

    diagnoses = diagnose(load_ncu(path))
    if fmt is OutputFormat.json:
        emit(render_ncu_json(str(path), diagnoses), output, inputs=[path], kind="json")
    else:
        cols = width or (_terminal_width() if output is None and sys.stdout.isatty() else 120)
        emit(render_ncu_terminal(str(path), diagnoses, cols, top), output)


_InputsArg = Annotated[list[Path], typer.Argument(
    metavar="INPUT...",
    help="nsys report (.nsys-rep/.qdrep), its SQLite export, a capture folder, a "
    "PyTorch profiler trace (*.pt.trace.json[.gz]), or a py-spy profile alone "
    "(speedscope/chrometrace JSON, raw text, SVG). Several inputs, a folder of reports or "
    "a quoted glob: one job (one report per rank; see docs/scaling.md).")]
_FormatOpt = Annotated[OutputFormat | None, typer.Option(
    "--format", "-f", help="Output format (default: from -o suffix, else table).")]
_OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the report to this file instead of stdout.")]
_TopOpt = Annotated[int | None, typer.Option(
    "--top", min=1, help="Rows per table and findings shown (default 10, or `top` "
    "in the config file).")]
_NcuOpt = Annotated[list[Path] | None, typer.Option(
    "--ncu", help="Nsight Compute report (.ncu-rep) or ncu CSV export to join onto the "
    "timeline (repeatable).")]
_PyspyOpt = Annotated[Path | None, typer.Option(
    "--pyspy", help="py-spy output (chrometrace JSON for time correlation; "
    "speedscope/raw/SVG for an aggregate profile). Found automatically in capture folders.")]
_MinImpactOpt = Annotated[str | None, typer.Option(
    "--min-impact",
    help="Hide findings with less recoverable time (e.g. 500us, 2ms, 1s; plain = ns; "
    "default 0, or `min-impact` in the config file).")]
_DisableOpt = Annotated[list[str] | None, typer.Option(
    "--disable", help="Turn off an analysis (e.g. `launch`) or drop a finding id or "
    "pattern (e.g. `gap.sync`, `copy.*`); repeatable. `infraprof config` lists the ids.")]
_ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML settings file (default: the nearest infraprof.toml, or "
    "pyproject.toml with [tool.infraprof]).")]
_WidthOpt = Annotated[int | None, typer.Option("--width", min=40, help="Terminal width.")]
_NoColorOpt = Annotated[bool, typer.Option("--no-color",
                                           help="No ANSI colours (also NO_COLOR).")]
_NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Read the export itself and analyse it: neither infraprof's "
    "columnar table cache nor its result cache (the stored `-f json` of an unchanged "
    "export analysed with the same settings) is read or written. "
    "`INFRAPROF_RESULT_CACHE=0` turns off only the result cache.")]
_JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, help="Several inputs: most worker processes (default: "
    "the usable cores, bounded by --memory-budget).")]
_MemoryBudgetOpt = Annotated[str | None, typer.Option(
    "--memory-budget", help="Several inputs: memory the workers may use together "
    "(e.g. 8GiB, 512MB; default half the available memory).")]
_DaskOpt = Annotated[str | None, typer.Option(
    "--dask", help="Several inputs: run on Dask: `local` (a LocalCluster on "
    "127.0.0.1) or a scheduler address tcp://HOST:PORT (needs infraprof[dask]).")]
_QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress line on stderr (it is shown only on a "
    "terminal, for runs longer than a few seconds).")]


def analyze(
    input_paths: _InputsArg, output_format: _FormatOpt = None, output: _OutputOpt = None,
    top: _TopOpt = None, ncu: _NcuOpt = None, pyspy: _PyspyOpt = None,
    min_impact: _MinImpactOpt = None, disable: _DisableOpt = None, config_file: _ConfigOpt = None,
    width: _WidthOpt = None, no_color: _NoColorOpt = False, no_cache: _NoCacheOpt = False,
    jobs: _JobsOpt = None, memory_budget: _MemoryBudgetOpt = None, dask: _DaskOpt = None,
    quiet: _QuietOpt = False,
) -> None:
    """Analyze one capture: GPU busy/idle, top kernels, CUDA API, memory ops, NVTX ranges,
    and ranked bottlenecks with estimated recoverable time."""
    ncu, disable = ncu or [], disable or []
    fmt = output_format or _SUFFIX_FORMATS.get(output.suffix.lower() if output else "",
                                               OutputFormat.table)
    cached = _result_key(input_paths, fmt, no_cache or bool(ncu or pyspy or jobs or dask
                                                            or memory_budget),
                         config_file, {"top": top, "min-impact": min_impact,
                                       "disable": list(disable)})
    if cached is not None and _emit_cached(cached[0], input_paths[0], output):
        return  # a result-cache hit: numpy, pandas and the analyses are never imported
    from infraprof import api
    from infraprof.cli.analyze_many import ManyOptions, analyze_several, is_several, warn_single

    config = api.analysis_config(config_file, disable=disable,
                                 settings={"top": top, "min-impact": min_impact})
    many = ManyOptions(jobs, memory_budget, dask, not no_cache)
    if is_several(input_paths, many):
        analyze_several(input_paths, config, fmt.value, output, many, ncu=ncu, pyspy=pyspy)
        return
    warn_single(many)
    _analyze_one(input_paths[0], _RunOptions(fmt, output, ncu, pyspy, width, no_color,
                                             no_cache, quiet), config, cached)


class _RunOptions(NamedTuple):
    """The command-line options of an analysis of one input."""

    fmt: OutputFormat
    output: Path | None
    ncu: list[Path]
    pyspy: Path | None
    width: int | None
    no_color: bool
    no_cache: bool
    quiet: bool


def _analyze_one(input_path: Path, opts: _RunOptions, config: AnalysisConfig,
                 cached: tuple[str, dict[str, object]] | None) -> None:
    """Analyze and render one input (a multi-process report is split per rank); store the
    JSON in the result cache when ``cached`` holds its key."""
    from infraprof import api
    from infraprof.cli.analyze_many import emit_split
    from infraprof.inputs import NCU_KINDS, PYSPY_KINDS, TRACE_KINDS, check_kind
    from infraprof.memory import heap_allocations
    from infraprof.model.processes import is_multi_process
    from infraprof.outputs import refuse_inputs

    fmt, output = opts.fmt, opts.output
    inputs = [input_path, *opts.ncu, opts.pyspy]
    refuse_inputs(output, inputs)
    kind = check_kind(input_path, TRACE_KINDS | NCU_KINDS | PYSPY_KINDS,
                      "an nsys report, its SQLite export, a capture folder, a PyTorch profiler "
                      "trace, an Nsight Compute report or a py-spy profile")
    if kind in NCU_KINDS:
        _analyze_ncu(input_path, fmt, output, opts.width, config.top)
        return
    with heap_allocations(), progress_line(progress_wanted(opts.quiet)) as progress:
        report = api.analyze(input_path, ncu=opts.ncu, pyspy=opts.pyspy, config=config,
                             progress=progress, use_cache=not opts.no_cache)
        split = is_multi_process(report.trace)
        if not split:
            if progress:
                progress(f"Rendering the {fmt.value} report")
            text, text_kind = _render(report, fmt, output, opts.width, opts.no_color,
                                      config.top)
    warnings = "".join(data_quality_lines(report.trace.data_quality, input_path)
                       + warning_lines(report.trace.meta.warnings))
    sys.stderr.write(warnings)
    if split:
        emit_split(report, input_path, config, fmt.value, output, inputs)
        return
    emit(text, output, inputs=inputs, kind=text_kind)
    if cached is not None:
        _store_result(cached, input_path, text, warnings)


RESULT_KIND = "analyze-json"
"""The result-cache kind of ``analyze -f json`` (:mod:`infraprof.result_cache`)."""


def _result_key(input_paths: list[Path], fmt: OutputFormat, bypass: bool,
                config_file: Path | None, cli_settings: dict[str, object]
                ) -> tuple[str, dict[str, object]] | None:
    """The result-cache key of this run and the settings it was made from, or None when the
    run is not cached: not ``-f json``, several inputs, ``bypass`` (``--no-cache``, ``--ncu``,
    ``--pyspy`` or options for several inputs) or an input the cache cannot key. Decided
    before numpy/pandas are imported; the effective ``AnalysisConfig`` is a function of the
    config file found, the command-line settings and the code, which the key holds."""
    if bypass or fmt is not OutputFormat.json or len(input_paths) != 1:
        return None
    from infraprof import result_cache
    from infraprof.config import load_config_file

    found = load_config_file(config_file)
    settings = {"config_file": found.source, "config": dict(found.analysis), **cli_settings}
    key = result_cache.entry_key(RESULT_KIND, input_paths[0], settings)
    return None if key is None else (key, settings)


def _emit_cached(key: str, input_path: Path, output: Path | None) -> bool:
    """Print the cached result of ``key`` as a fresh run would (its warnings on stderr, the
    JSON to stdout or ``output``); False on a miss."""
    from infraprof import result_cache
    from infraprof.outputs import refuse_inputs

    entry = result_cache.load(key)
    stderr = entry.meta.get("stderr") if entry is not None else None
    if entry is None or not isinstance(stderr, str):
        return False
    try:
        text = entry.body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    refuse_inputs(output, [input_path])
    sys.stderr.write(stderr)
    emit(text, output, inputs=[input_path], kind="json")
    return True


def _store_result(cached: tuple[str, dict[str, object]], input_path: Path, text: str,
                  warnings: str) -> None:
    """Store the JSON of a fresh run, unless the input changed while it was analysed."""
    from infraprof import result_cache

    key, settings = cached
    if result_cache.still_same(input_path, key, RESULT_KIND, settings):
        result_cache.store(key, text.encode("utf-8", "surrogatepass"), {"stderr": warnings})


def _render(report: Report, fmt: OutputFormat, output: Path | None, width: int | None,
            no_color: bool, top: int) -> tuple[str, TextKind]:
    # only the renderer asked for is imported (the HTML one loads plotly)
    if fmt is OutputFormat.json:
        from infraprof.render.json_report import render_json

        return render_json(report), "json"
    if fmt in (OutputFormat.markdown, OutputFormat.md):
        from infraprof.render.markdown import render_markdown

        return render_markdown(report, top=top), "text"
    if fmt is OutputFormat.html:
        from infraprof.render.html import render_html

        return render_html(report, top=top), "text"
    from infraprof.render.terminal import render_terminal

    color = output is None and color_wanted(no_color)
    cols = width or (_terminal_width() if output is None and sys.stdout.isatty() else 120)
    return render_terminal(report, width=cols, color=color, top=top), "ansi" if color else "text"
