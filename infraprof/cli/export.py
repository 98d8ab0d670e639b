"""``infraprof export``: the trace for other viewers (Perfetto UI, chrome://tracing, speedscope,
flame-graph tools)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from infraprof.cli.output import emit, warn_data_quality
from infraprof.errors import InputError, UsageError


class ExportFormat(str, Enum):
    perfetto = "perfetto"
    chrome = "chrome"
    speedscope = "speedscope"
    collapsed = "collapsed"


_SUFFIXES = ((".speedscope.json", ExportFormat.speedscope), (".json", ExportFormat.chrome),
             (".collapsed", ExportFormat.collapsed), (".folded", ExportFormat.collapsed))
_STACKS = (ExportFormat.speedscope, ExportFormat.collapsed)


def _guess(output: Path | None) -> ExportFormat:
    name = output.name.lower() if output else ""
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise UsageError("give --to perfetto|chrome|speedscope|collapsed (or an -o name ending in "
                     ".json, .speedscope.json, .collapsed or .folded)")


def export(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT",
        help="nsys report (.nsys-rep/.qdrep), its SQLite export, a capture folder, or a "
        "PyTorch profiler trace (*.pt.trace.json[.gz])."),
    to: ExportFormat | None = typer.Option(
        None, "--to", "-t",
        help="perfetto or chrome: Chrome trace-event JSON (GPU streams, CUDA API and OS "
        "runtime calls per thread, NVTX, idle gaps with their cause, launch->kernel arrows); "
        "speedscope: CPU sample stacks for speedscope.app; collapsed: folded stacks for "
        "flamegraph.pl/inferno. Default: from the -o name."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout."),
    idle_only: bool = typer.Option(
        False, "--idle-only",
        help="speedscope/collapsed: only CPU samples taken while a GPU was idle."),
    pyspy: Path | None = typer.Option(
        None, "--pyspy", help="py-spy chrometrace to include (found automatically in capture "
        "folders): Python stacks in the Perfetto trace; speedscope and collapsed stacks when "
        "the nsys trace has no CPU samples."),
) -> None:
    """Export a capture for Perfetto UI / chrome://tracing (JSON trace events) or its CPU
    sample stacks for speedscope and flame-graph tools."""
    from infraprof.analyses.python_frames import idle_collapsed
    from infraprof.inputs import load_input, pyspy_for
    from infraprof.outputs import refuse_inputs
    from infraprof.ranking import build_report
    from infraprof.render.chrome_trace import render_chrome_trace
    from infraprof.render.stacks import (
        render_collapsed,
        render_speedscope,
        speedscope_from_collapsed,
        thread_stacks,
    )

    fmt = to or _guess(output)
    if idle_only and fmt not in _STACKS:
        raise UsageError("--idle-only applies to --to speedscope and --to collapsed")
    inputs = [input_path, pyspy]
    refuse_inputs(output, inputs)
    loaded = load_input(input_path, None)
    trace = loaded.trace
    warn_data_quality(trace.data_quality, input_path)
    aligned = loaded.python if pyspy is None and loaded.python is not None else pyspy_for(
        input_path, pyspy, trace.nvtx, trace.meta.session_start_utc_ns)
    if fmt in _STACKS and trace.cpu_samples.empty and aligned is not None:
        # py-spy stacks: collapsed text, and speedscope made from that same text
        text = aligned.profile.collapsed()
        if idle_only:
            analysis = build_report(trace, pyspy=aligned).analysis
            text = idle_collapsed(trace, aligned, analysis.attributions if analysis else None)
        what = "py-spy samples during GPU idle" if idle_only else "py-spy samples"
        emit(text if fmt is ExportFormat.collapsed
             else speedscope_from_collapsed(text, f"{what}: {aligned.profile.path}"), output,
             inputs=inputs, kind="text" if fmt is ExportFormat.collapsed else "json")
        return
    if fmt in _STACKS and trace.cpu_samples.empty:
        raise InputError(f"{input_path}: no CPU samples in this trace; capture with CPU "
                         "sampling (`infraprof capture --sample` or `nsys profile "
                         "--sample=process-tree`)")
    report = build_report(trace, pyspy=aligned)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if fmt in _STACKS and not thread_stacks(report, idle_only):
        err.print("infraprof: note: no CPU sample with a callchain"
                  + (" was taken during GPU idle" if idle_only else ""), markup=False)
    if fmt is ExportFormat.speedscope:
        text = render_speedscope(report, idle_only)
    elif fmt is ExportFormat.collapsed:
        text = render_collapsed(report, idle_only)
    else:
        text = render_chrome_trace(report)
    emit(text, output, inputs=inputs, kind="text" if fmt is ExportFormat.collapsed else "json")
    if output is not None:
        hint = {ExportFormat.speedscope: "open it in https://www.speedscope.app",
                ExportFormat.collapsed: "feed it to flamegraph.pl or inferno-flamegraph"}.get(
            fmt, "open it in https://ui.perfetto.dev or chrome://tracing")
        err.print(f"infraprof: wrote {output} ({fmt.value}); {hint}", markup=False)
