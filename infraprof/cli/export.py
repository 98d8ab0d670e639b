"""``infraprof export``: the trace for other viewers (Perfetto UI, chrome://tracing, speedscope,
flame-graph tools)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from infraprof.cli.output import emit, warn_data_quality
from infraprof.cli.progress import progress_line, progress_wanted
from infraprof.errors import InputError, UsageError

if TYPE_CHECKING:  # loaded when a command runs, not at --help
    from infraprof.model import Trace
    from infraprof.model.clock import AlignedPyspy
    from infraprof.ranking import Report
    from infraprof.render.timeline_budget import Detail


class ExportFormat(str, Enum):
    perfetto = "perfetto"
    chrome = "chrome"
    speedscope = "speedscope"
    collapsed = "collapsed"


_SUFFIXES = ((".speedscope.json", ExportFormat.speedscope), (".json", ExportFormat.chrome),
             (".perfetto-trace", ExportFormat.perfetto), (".pftrace", ExportFormat.perfetto),
             (".collapsed", ExportFormat.collapsed), (".folded", ExportFormat.collapsed))
_TIMELINES = (ExportFormat.perfetto, ExportFormat.chrome)
# what the timeline exports need: gaps with their cause and finding, py-spy samples
_TIMELINE_ANALYSES = frozenset({"timeline", "attribution", "gaps", "python"})
_STACKS = (ExportFormat.speedscope, ExportFormat.collapsed)


def _guess(output: Path | None) -> ExportFormat:
    name = output.name.lower() if output else ""
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise UsageError("give --to perfetto|chrome|speedscope|collapsed (or an -o name ending in "
                     ".perfetto-trace, .pftrace, .json, .speedscope.json, .collapsed or "
                     ".folded)")


_InputArg = Annotated[Path, typer.Argument(
    metavar="INPUT",
    help="nsys report (.nsys-rep/.qdrep), its SQLite export, a capture folder, or a "
    "PyTorch profiler trace (*.pt.trace.json[.gz]).")]
_ToOpt = Annotated[ExportFormat | None, typer.Option(
    "--to", "-t",
    help="perfetto: Perfetto's native protobuf trace (GPU streams, CUDA API and OS "
    "runtime calls per thread, NVTX, py-spy, idle gaps with their cause and finding, "
    "launch->kernel arrows; binary, so -o FILE or a pipe); chrome: the same as Chrome "
    "trace-event JSON; speedscope: CPU sample stacks for speedscope.app; collapsed: "
    "folded stacks for flamegraph.pl/inferno. Default: from the -o name (.perfetto-trace "
    "or .pftrace: perfetto, .json: chrome).")]
_OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write to this file instead of stdout.")]
_IdleOnlyOpt = Annotated[bool, typer.Option(
    "--idle-only", help="speedscope/collapsed: only CPU samples taken while a GPU was idle.")]
_PyspyOpt = Annotated[Path | None, typer.Option(
    "--pyspy", help="py-spy chrometrace to include (found automatically in capture "
    "folders): Python stacks in the Perfetto trace; speedscope and collapsed stacks when "
    "the nsys trace has no CPU samples.")]
_WindowOpt = Annotated[str | None, typer.Option(
    "--window", "-w", metavar="START:END",
    help="perfetto/chrome: only what overlaps this time window: durations from the "
    "trace's first event (1.5s:2s, 200ms:, :1s) or NVTX steps (step:3, step:3-5).")]
_MaxSizeOpt = Annotated[str | None, typer.Option(
    "--max-size", metavar="SIZE",
    help="perfetto/chrome: keep the file within SIZE (50MB, 1GiB, plain bytes; 0 or none: "
    "no limit). Default 50MB, which the Perfetto UI opens in a browser. When the complete "
    "export is larger, the file holds per-GPU counters over the whole trace (busy %, idle "
    "ns of the top causes) and every event of one detail window: centred on the top "
    "finding's largest gap (else the trace's middle), as wide as the budget allows; a "
    "note on stderr says which window. See docs/perfetto.md.")]
_QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="No progress line on stderr (it is shown only on a terminal, "
    "for runs longer than a few seconds).")]
_MaxEventsOpt = Annotated[int | None, typer.Option(
    "--max-events", min=1,
    help="perfetto/chrome: refuse (exit 2) rather than write more slices and instants "
    "than this; default: no limit.")]


def export(input_path: _InputArg, to: _ToOpt = None, output: _OutputOpt = None,
           idle_only: _IdleOnlyOpt = False, pyspy: _PyspyOpt = None, window: _WindowOpt = None,
           max_events: _MaxEventsOpt = None, max_size: _MaxSizeOpt = None,
           quiet: _QuietOpt = False) -> None:
    """Export a capture for Perfetto UI / chrome://tracing (JSON trace events) or its CPU
    sample stacks for speedscope and flame-graph tools."""
    from infraprof.inputs import load_input, pyspy_for
    from infraprof.memory import heap_allocations
    from infraprof.outputs import refuse_inputs

    fmt = to or _guess(output)
    _check_options(fmt, output, idle_only, window, max_events, max_size)
    budget = parse_max_size(max_size)
    inputs = [input_path, pyspy]
    refuse_inputs(output, inputs)
    with heap_allocations(), progress_line(progress_wanted(quiet)) as progress:
        loaded = load_input(input_path, progress)
        trace = loaded.trace
        aligned = loaded.python if pyspy is None and loaded.python is not None else pyspy_for(
            input_path, pyspy, trace.nvtx, trace.meta.session_start_utc_ns)
        if fmt in _TIMELINES:
            limits = _Limits(window, max_events, budget)
            note = _export_timeline(input_path, trace, aligned, fmt, output, inputs, limits,
                                    progress)
    # printed once the progress line is gone
    warn_data_quality(trace.data_quality, input_path)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if fmt in _TIMELINES:
        if note is not None:
            err.print(note, markup=False)
        if output is not None:
            err.print(f"infraprof: wrote {output} ({fmt.value}); open it in "
                      "https://ui.perfetto.dev" + (" or chrome://tracing" if fmt is
                                                    ExportFormat.chrome else ""), markup=False)
        return
    if trace.cpu_samples.empty and aligned is not None:
        _export_pyspy_stacks(trace, aligned, fmt, output, inputs, idle_only)
        return
    if trace.cpu_samples.empty:
        raise InputError(f"{input_path}: no CPU samples in this trace; capture with CPU "
                         "sampling (`infraprof capture --sample` or `nsys profile "
                         "--sample=process-tree`)")
    _export_sample_stacks(trace, aligned, fmt, output, inputs, idle_only, err)


def _check_options(fmt: ExportFormat, output: Path | None, idle_only: bool,
                   window: str | None, max_events: int | None, max_size: str | None) -> None:
    """Refuse (exit 2) options that do not apply to ``fmt``."""
    if idle_only and fmt not in _STACKS:
        raise UsageError("--idle-only applies to --to speedscope and --to collapsed")
    if fmt not in _TIMELINES and (window is not None or max_events is not None
                                  or max_size is not None):
        raise UsageError("--window, --max-events and --max-size apply to --to perfetto and "
                         "--to chrome")
    if fmt is ExportFormat.perfetto and output is None and sys.stdout.isatty():
        raise UsageError("--to perfetto writes a binary file; give -o FILE.perfetto-trace or "
                         "pipe the output")


def _export_pyspy_stacks(trace: Trace, aligned: AlignedPyspy, fmt: ExportFormat,
                         output: Path | None, inputs: list[Path | None], idle_only: bool
                         ) -> None:
    """py-spy stacks (no nsys CPU samples): collapsed text, and speedscope made from it."""
    from infraprof.analyses.python_frames import idle_collapsed
    from infraprof.ranking import build_report
    from infraprof.render.stacks import speedscope_from_collapsed

    text = aligned.profile.collapsed()
    if idle_only:
        analysis = build_report(trace, pyspy=aligned).analysis
        text = idle_collapsed(trace, aligned, analysis.attributions if analysis else None)
    what = "py-spy samples during GPU idle" if idle_only else "py-spy samples"
    emit(text if fmt is ExportFormat.collapsed
         else speedscope_from_collapsed(text, f"{what}: {aligned.profile.path}"), output,
         inputs=inputs, kind="text" if fmt is ExportFormat.collapsed else "json")


def _export_sample_stacks(trace: Trace, aligned: AlignedPyspy | None, fmt: ExportFormat,
                          output: Path | None, inputs: list[Path | None], idle_only: bool,
                          err: Console) -> None:
    """The nsys CPU samples' stacks as speedscope JSON or collapsed text."""
    from infraprof.ranking import build_report
    from infraprof.render.stacks import render_collapsed, render_speedscope, thread_stacks

    report = build_report(trace, pyspy=aligned)
    if not thread_stacks(report, idle_only):
        err.print("infraprof: note: no CPU sample with a callchain"
                  + (" was taken during GPU idle" if idle_only else ""), markup=False)
    if fmt is ExportFormat.speedscope:
        text = render_speedscope(report, idle_only)
    else:
        text = render_collapsed(report, idle_only)
    emit(text, output, inputs=inputs, kind="text" if fmt is ExportFormat.collapsed else "json")
    if output is not None:
        hint = ("open it in https://www.speedscope.app" if fmt is ExportFormat.speedscope
                else "feed it to flamegraph.pl or inferno-flamegraph")
        err.print(f"infraprof: wrote {output} ({fmt.value}); {hint}", markup=False)


def _too_many(count: int, max_events: int, input_path: Path) -> UsageError:
    return UsageError(f"{input_path}: the export would hold {count:,} events, more than "
                      f"--max-events {max_events:,}; cut a time window with --window "
                      "(e.g. --window step:3 or --window 1s:1.5s) or raise --max-events")


DEFAULT_MAX_SIZE = 50_000_000


def parse_max_size(text: str | None) -> int | None:
    """``--max-size`` in bytes (default 50 MB); None for ``0`` or ``none`` (no limit)."""
    from infraprof.units import parse_size

    if text is None:
        return DEFAULT_MAX_SIZE
    if text.strip().lower() in ("0", "none"):
        return None
    return parse_size(text, "--max-size")


@dataclass(frozen=True)
class _Limits:
    window: str | None
    max_events: int | None
    budget: int | None  # bytes; None: no limit


def _export_timeline(input_path: Path, trace: Trace, aligned: AlignedPyspy | None,
                     fmt: ExportFormat, output: Path | None, inputs: list[Path | None],
                     limits: _Limits, progress: Callable[[str], None] | None) -> str | None:
    """Perfetto protobuf or Chrome JSON, streamed to ``output`` (stdout when None); within
    ``limits.budget`` bytes by :mod:`~infraprof.render.timeline_budget`'s rule. Returns the
    note to print when the budget cut the export."""
    from infraprof.outputs import open_output
    from infraprof.render.export_window import parse_window
    from infraprof.render.timeline_budget import write_within
    from infraprof.render.timeline_export import rows_in_window

    span = parse_window(limits.window, trace) if limits.window is not None else None
    max_events = limits.max_events
    if (max_events is not None and limits.budget is None
            and (early := rows_in_window(trace, span)) > max_events):
        raise _too_many(early, max_events, input_path)
    writing = f"Writing the {'Perfetto' if fmt is ExportFormat.perfetto else 'Chrome'} trace"
    if limits.budget is None:  # the report is the callee's alone: it can drop it
        report = _timeline_report(trace, aligned, progress)
        if progress:
            progress(writing)
        _write_complete(report, fmt, span, max_events, input_path, output, inputs)
        return None
    report = _timeline_report(trace, aligned, progress)
    if progress:
        progress(f"{writing} (at most {limits.budget:,} bytes)")

    def check_count(count: int) -> None:
        if max_events is not None and count > max_events:
            raise _too_many(count, max_events, input_path)

    with open_output(output, inputs, "the trace") as out:
        detail = write_within(report, fmt.value, span, limits.budget, out.write, check_count)
    return None if detail is None else _budget_note(detail, limits, trace)


def _timeline_report(trace: Trace, aligned: AlignedPyspy | None,
                     progress: Callable[[str], None] | None = None) -> Report:
    """The report with just the analyses the timeline exports draw."""
    from infraprof.analyses.registry import AnalysisConfig, analysis_ids
    from infraprof.ranking import build_report

    config = AnalysisConfig(disabled=frozenset(analysis_ids()) - _TIMELINE_ANALYSES)
    return build_report(trace, config, pyspy=aligned, progress=progress)


def _budget_note(detail: Detail, limits: _Limits, trace: Trace) -> str:
    """The one stderr line saying what a size-bounded export wrote."""
    from infraprof.render.timeline_export import trace_start_ns
    from infraprof.units import fmt_bytes

    origin = trace_start_ns(trace)
    lo, hi = (ns - origin for ns in detail.window)
    decimals = max(3, math.ceil(-math.log10(max(hi - lo, 1) / 1e9)) + 2)
    what = "complete export" if limits.window is None else f"export of --window {limits.window}"
    return (f"infraprof: note: the {what} would be ~{fmt_bytes(detail.complete_size)} "
            f"(budget {fmt_bytes(limits.budget)}): wrote every event in "
            f"{lo / 1e9:.{decimals}f} s–{hi / 1e9:.{decimals}f} s ({detail.reason}) and "
            + ("per-device counters for the rest" if detail.counters else
               "nothing else (no GPU to summarise)")
            + "; --max-size 0 writes everything, --window picks another window")


def _write_complete(report: Report, fmt: ExportFormat, span: tuple[int, int] | None,
                    max_events: int | None, input_path: Path, output: Path | None,
                    inputs: list[Path | None]) -> None:
    """Everything, as it is produced (no budget)."""
    from infraprof.memory import release_free_memory
    from infraprof.outputs import open_output
    from infraprof.render.chrome_trace import write_chrome_trace
    from infraprof.render.perfetto_trace import write_perfetto
    from infraprof.render.timeline_export import build_plan

    plan = build_plan(report, span)
    if max_events is not None and plan.event_count() > max_events:
        raise _too_many(plan.event_count(), max_events, input_path)
    chrome_report = None if fmt is ExportFormat.perfetto else report
    del report  # the Perfetto writer reads only the plan: the analyses' results can go
    release_free_memory()
    with open_output(output, inputs, "the trace") as out:
        if chrome_report is None:
            write_perfetto(plan, out.write)
        else:
            write_chrome_trace(chrome_report, plan, out.write)
