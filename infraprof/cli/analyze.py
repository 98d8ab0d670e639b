"""``infraprof analyze``: summaries and ranked findings for one capture."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from infraprof import api
from infraprof.analyses.ncu_kernels import diagnose
from infraprof.analyses.registry import AnalysisConfig
from infraprof.cli.output import color_wanted, emit
from infraprof.model import Trace
from infraprof.model.clock import AlignedPyspy
from infraprof.model.kernel_metrics import load_ncu
from infraprof.model.trace import TraceMeta
from infraprof.ranking import Report, build_report
from infraprof.readers.ncu_csv import csv_page
from infraprof.readers.ncu_report import is_ncu_report
from infraprof.readers.pyspy import read_pyspy
from infraprof.render.html import render_html
from infraprof.render.json_report import render_json
from infraprof.render.markdown import render_markdown
from infraprof.render.ncu import render_ncu_json, render_ncu_terminal
from infraprof.render.terminal import render_terminal


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    md = "md"
    html = "html"


_SUFFIX_FORMATS = {".json": OutputFormat.json, ".txt": OutputFormat.table,
                   ".md": OutputFormat.markdown, ".html": OutputFormat.html}


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    if not enabled:
        yield None
        return
    console = Console(stderr=True)
    with console.status("Working…") as status:
        yield lambda message: status.update(message)


def _is_ncu_input(path: Path) -> bool:
    if not path.is_file():
        return False
    return is_ncu_report(path) or path.suffix == ".ncu-rep" or (
        path.suffix.lower() == ".csv" and csv_page(path) is not None)


def _analyze_ncu(path: Path, fmt: OutputFormat, output: Path | None, width: int | None,
                 top: int) -> None:
    diagnoses = diagnose(load_ncu(path))
    if fmt is OutputFormat.json:
        emit(render_ncu_json(str(path), diagnoses), output)
    else:
        cols = width or (Console().width if output is None and sys.stdout.isatty() else 120)
        emit(render_ncu_terminal(str(path), diagnoses, cols, top), output)


_PYSPY_SUFFIXES = (".json", ".txt", ".svg", ".raw", ".collapsed", ".folded")


def _is_pyspy_alone(path: Path) -> bool:
    """A py-spy output given as the input (speedscope/chrometrace JSON, raw collapsed text or
    SVG): a regular file with one of those suffixes (nsys exports are ``.sqlite``)."""
    return path.is_file() and path.suffix.lower() in _PYSPY_SUFFIXES


def _pyspy_alone_report(path: Path, config: AnalysisConfig) -> Report:
    """A report of a py-spy profile alone: no trace, the profile untimed (host profile only)."""
    profile = read_pyspy(path)
    note = "py-spy profile analysed alone: no nsys trace to correlate with"
    aligned = AlignedPyspy(profile, None, None, (*profile.notes, note))
    trace = Trace(TraceMeta(source=str(path), sqlite_path=""))
    return build_report(trace, config, pyspy=aligned)


def analyze(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT",
        help="nsys report (.nsys-rep/.qdrep), its SQLite export, a capture folder, or a "
        "py-spy profile alone (speedscope/chrometrace JSON, raw text, SVG)."),
    output_format: OutputFormat | None = typer.Option(
        None, "--format", "-f", help="Output format (default: from -o suffix, else table)."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report to this file instead of stdout."),
    top: int | None = typer.Option(
        None, "--top", min=1, help="Rows per table and findings shown (default 10, or `top` "
        "in the config file)."),
    ncu: list[Path] = typer.Option(
        [], "--ncu", help="Nsight Compute report (.ncu-rep) or ncu CSV export to join onto the "
        "timeline (repeatable)."),
    pyspy: Path | None = typer.Option(
        None, "--pyspy", help="py-spy output (chrometrace JSON for time correlation; "
        "speedscope/raw/SVG for an aggregate profile). Found automatically in capture folders."),
    min_impact: str | None = typer.Option(
        None, "--min-impact",
        help="Hide findings with less recoverable time (e.g. 500us, 2ms, 1s; plain = ns; "
        "default 0, or `min-impact` in the config file)."),
    disable: list[str] = typer.Option(
        [], "--disable", help="Turn off an analysis (e.g. `launch`) or drop a finding id or "
        "pattern (e.g. `gap.sync`, `copy.*`); repeatable. `infraprof config` lists the ids."),
    config_file: Path | None = typer.Option(
        None, "--config", help="TOML settings file (default: the nearest infraprof.toml, or "
        "pyproject.toml with [tool.infraprof])."),
    width: int | None = typer.Option(None, "--width", min=40, help="Terminal width."),
    no_color: bool = typer.Option(False, "--no-color", help="No ANSI colours (also NO_COLOR)."),
) -> None:
    """Analyze one capture: GPU busy/idle, top kernels, CUDA API, memory ops, NVTX ranges,
    and ranked bottlenecks with estimated recoverable time."""
    fmt = output_format
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(output.suffix.lower(), OutputFormat.table) if output else (
            OutputFormat.table)
    config = api.analysis_config(config_file, disable=disable,
                                 settings={"top": top, "min-impact": min_impact})
    if _is_ncu_input(input_path):
        _analyze_ncu(input_path, fmt, output, width, config.top)
        return
    show_progress = sys.stderr.isatty() and not os.environ.get("CI")
    if pyspy is None and not ncu and _is_pyspy_alone(input_path):
        report = _pyspy_alone_report(input_path, config)
    else:
        with _progress(show_progress) as progress:
            report = api.analyze(input_path, ncu=ncu, pyspy=pyspy, config=config,
                                 progress=progress)
    top = config.top
    if fmt is OutputFormat.json:
        text = render_json(report)
    elif fmt in (OutputFormat.markdown, OutputFormat.md):
        text = render_markdown(report, top=top)
    elif fmt is OutputFormat.html:
        text = render_html(report, top=top)
    else:
        color = output is None and color_wanted(no_color)
        cols = width or (Console().width if output is None and sys.stdout.isatty() else 120)
        text = render_terminal(report, width=cols, color=color, top=top)
    emit(text, output)
