"""``infraprof capture``: run a program under nsys (+ py-spy) into one analysable folder."""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from infraprof.capture.layout import PYSPY_RATE_HZ, PYSPY_RAW, Manifest, run_folder_name
from infraprof.errors import InfraprofError, ToolError, UsageError

if TYPE_CHECKING:  # the capture machinery is imported when the command runs
    from infraprof.capture.ncu import NcuOptions
    from infraprof.capture.runner import CaptureOptions, CaptureResult


def _default_folder(command: list[str]) -> Path:
    app = Path(command[0]).name if command else "app"
    if app.startswith("python") and len(command) > 1:
        app = Path(command[-1] if command[1] == "-m" else command[1]).stem
    return Path(f"infraprof-{app}-{time.strftime('%Y%m%d-%H%M%S')}")


def postprocess(result: CaptureResult, log: Any) -> dict[str, Any] | None:
    """Derive the aggregate py-spy file and measure the clock alignment into the manifest.
    Returns the alignment record (``None`` without timed py-spy samples)."""
    from infraprof.capture.manifest import update_manifest
    from infraprof.inputs import align_pyspy, load_trace
    from infraprof.readers.pyspy import read_pyspy

    if result.pyspy_file is None:
        return None
    manifest = Manifest.from_dict(result.manifest)
    rate = manifest.pyspy_rate_hz or float(PYSPY_RATE_HZ)
    try:
        profile = read_pyspy(result.pyspy_file, rate)
        (result.folder / PYSPY_RAW).write_text(profile.collapsed(), encoding="utf-8")
    except InfraprofError as exc:
        log(f"py-spy output unreadable: {exc.message}")
        return None
    if result.sqlite is None:
        return None
    try:
        trace = load_trace(result.sqlite)
        aligned = align_pyspy(trace.nvtx, result.pyspy_file, manifest,
                              trace.meta.session_start_utc_ns)
    except InfraprofError as exc:
        log(f"clock alignment skipped: {exc.message}")
        return None
    record: dict[str, Any] = {"notes": list(aligned.notes)}
    if aligned.alignment is not None:
        record.update(aligned.alignment.to_dict())
    update_manifest(result.folder, alignment=record)
    return record


def _ncu_options(set_name: str, kernel: str | None, skip: int | None, count: int | None,
                 clock: str, source: Path | None, log: Any) -> NcuOptions:
    if clock not in ("none", "base"):
        raise UsageError(f"--clock-control must be none or base, not {clock!r}")
    from infraprof.analyses.ncu_findings import profiling_suggestions
    from infraprof.capture.ncu import NcuOptions
    from infraprof.inputs import load_trace

    if source is not None and kernel is None:
        hot = profiling_suggestions(load_trace(source, all_columns=False))
        if hot:
            kernel = "|".join("^" + re.escape(s.short_name) + "$" for s in hot)
            count = count or len(hot)
            log("ncu: profiling the hottest kernels of " + str(source) + ": "
                + ", ".join(s.short_name for s in hot))
        else:
            log(f"ncu: {source} has no hot kernels; profiling every launch")
    return NcuOptions(set_name=set_name, kernel_regex=kernel, launch_skip=skip,
                      launch_count=count, clock_control=clock)


def _summary(result: CaptureResult, alignment: dict[str, Any] | None, err: Console) -> None:
    parts = [f"capture folder: {result.folder}",
             f"app exit code: {result.exit_code}",
             f"report: {result.report.name if result.report else 'none'}",
             f"sqlite: {result.sqlite.name if result.sqlite else 'none'}",
             f"py-spy: {result.pyspy_file.name if result.pyspy_file else 'none'}"]
    if alignment and "error_ns" in alignment:
        parts.append(f"py-spy↔nsys alignment error: {alignment['error_ns'] / 1e6:.2f} ms "
                     f"(nsys clock: {alignment['nsys']['method']}, py-spy clock: "
                     f"{alignment['pyspy']['method']})")
    elif alignment:
        parts.extend(alignment.get("notes", []))
    err.print("infraprof: " + "\n  ".join(parts), markup=False, highlight=False)


def _capture_once(opts: CaptureOptions, nsys: bool, ncu_options: Callable[[], NcuOptions] | None,
                  log: Callable[[str], None], err: Console) -> int:
    """One capture into ``opts.output``: nsys (+ py-spy) then, when asked, ncu. Returns the
    app's exit code under nsys (0 without nsys)."""
    from infraprof.capture.manifest import update_manifest
    from infraprof.capture.ncu import run_ncu
    from infraprof.capture.runner import run_capture

    exit_code = 0
    if nsys:
        result = run_capture(opts, log)
        alignment = None
        with contextlib.suppress(OSError):
            alignment = postprocess(result, log)
        _summary(result, alignment, err)
        if result.tool_failure:
            raise ToolError(f"{result.tool_failure}; what was captured is in {opts.output}")
        exit_code = result.exit_code
    if ncu_options is not None:
        nopts = ncu_options()
        opts.output.mkdir(parents=True, exist_ok=True)
        outcome = run_ncu(list(opts.command), opts.output, nopts)
        update_manifest(opts.output, ncu=outcome.to_manifest())
        log(f"ncu: {outcome.message}")
        if outcome.status == "missing" and not nsys:
            raise ToolError(outcome.message)
    return exit_code


_CommandArg = Annotated[list[str] | None, typer.Argument(
    metavar="COMMAND [ARGS]...",
    help="The program to run, e.g. `python train.py --epochs 1` (put `--` before it when "
         "its arguments look like infraprof options).")]
_OutputOpt = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Capture folder (new or empty; default infraprof-<app>-<time>).")]
_PyspyOpt = Annotated[bool | None, typer.Option(
    "--pyspy/--no-pyspy",
    help="Sample Python stacks with py-spy (default: on for Python programs).")]
_RateOpt = Annotated[int, typer.Option("--rate", min=1, max=5000,
                                       help="py-spy sampling rate in Hz.")]
_RepeatOpt = Annotated[int, typer.Option("--repeat", min=1, max=1000,
                                         help="Capture K times into DIR/run-1 … DIR/run-K.")]
_NsysArgOpt = Annotated[list[str] | None, typer.Option(
    "--nsys-arg", help="Extra nsys profile flag, repeatable: --nsys-arg=--trace=nvtx")]
_SampleOpt = Annotated[bool, typer.Option(
    "--sample",
    help="nsys CPU sampling, context switches and CUDA backtraces (can make nsys 2022.4 "
         "hang on some machines; the watchdog then stops it).")]
_TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", min=0.1,
    help="Stop the app after this many seconds (the report is still written).")]
_NcuOpt = Annotated[bool, typer.Option(
    "--ncu", help="Also run the app under Nsight Compute (separately; kernels are "
    "replayed) and store profile.ncu-rep in the folder.")]
_NcuSetOpt = Annotated[str, typer.Option(
    "--ncu-set", help="ncu section set (full, detailed, basic, roofline, ...).")]
_KernelOpt = Annotated[str | None, typer.Option(
    "--kernel", help="Profile only kernels whose function name matches this regex.")]
_LaunchSkipOpt = Annotated[int | None, typer.Option(
    "--launch-skip", min=0, help="ncu: skip this many matching launches.")]
_LaunchCountOpt = Annotated[int | None, typer.Option(
    "--launch-count", min=1, help="ncu: profile this many matching launches.")]
_ClockControlOpt = Annotated[str, typer.Option(
    "--clock-control", help="ncu clock control: none (app clocks) or base.")]
_FromOpt = Annotated[Path | None, typer.Option(
    "--from", help="With --ncu: profile the hottest kernels of this earlier capture "
    "(folder or nsys file) instead of every launch.")]
_NsysOpt = Annotated[bool, typer.Option(
    "--nsys/--no-nsys", help="Run the Nsight Systems capture (default on).")]


def capture(
    ctx: typer.Context, command: _CommandArg = None, output: _OutputOpt = None,
    pyspy: _PyspyOpt = None, rate: _RateOpt = PYSPY_RATE_HZ, repeat: _RepeatOpt = 1,
    nsys_arg: _NsysArgOpt = None, sample: _SampleOpt = False, timeout: _TimeoutOpt = None,
    ncu: _NcuOpt = False, ncu_set: _NcuSetOpt = "full", kernel: _KernelOpt = None,
    launch_skip: _LaunchSkipOpt = None, launch_count: _LaunchCountOpt = None,
    clock_control: _ClockControlOpt = "none", from_capture: _FromOpt = None,
    nsys: _NsysOpt = True,
) -> None:
    """Run COMMAND under Nsight Systems (and py-spy for Python) and write report, SQLite export,
    py-spy samples and manifest.json into one folder for `infraprof analyze`."""
    from infraprof.capture.runner import CaptureOptions

    argv = [*(command or []), *ctx.args]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("no command given; usage: infraprof capture [OPTIONS] -- COMMAND [ARGS]")
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def log(message: str) -> None:
        err.print(f"infraprof: {message}", markup=False)

    folder = output or _default_folder(argv)
    ncu_options = (lambda: _ncu_options(ncu_set, kernel, launch_skip, launch_count,
                                        clock_control, from_capture, log)) if ncu else None
    exit_code = 0
    for k in range(repeat):
        target = folder / run_folder_name(k + 1) if repeat > 1 else folder
        if repeat > 1:
            log(f"run {k + 1} of {repeat} → {target}")
        opts = CaptureOptions(command=tuple(argv), output=target, pyspy=pyspy, rate_hz=rate,
                              sample=sample, nsys_args=tuple(nsys_arg or []), timeout_s=timeout)
        exit_code = _capture_once(opts, nsys, ncu_options, log, err)
        if exit_code != 0:
            if repeat > 1 and k + 1 < repeat:
                log(f"app exited with {exit_code}; remaining repeats skipped")
            break
    sys.stdout.flush()
    if exit_code:
        # SystemExit, not typer.Exit: with standalone_mode=False click returns typer.Exit's
        # code from app() instead of raising, and cli.main() ignores that return value.
        raise SystemExit(exit_code)
