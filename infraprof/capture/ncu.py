"""Run the application under Nsight Compute (``ncu``) into the capture folder.

ncu replays each profiled kernel many times (tens of passes with ``--set full``), so it runs
separately from the nsys capture and should be limited to the kernels that matter
(``--kernel`` regex, ``--launch-skip``, ``--launch-count``). ``--clock-control none`` keeps the
GPU's own clocks (ncu locks them to base by default), which matches what the application sees.

Outcomes (:class:`NcuOutcome.status`):

* ``ok``: a report with at least one profiled kernel;
* ``no-kernels``: ncu ran but profiled nothing (no GPU, or the filter matched no launch);
* ``permission``: ``ERR_NVGPUCTRPERM`` — the driver restricts GPU performance counters to
  admin users (fixes in :data:`PERMISSION_FIXES` and ``docs/faq.md``);
* ``failed`` / ``timeout`` / ``missing``: ncu failed, was stopped, or is not installed.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infraprof.capture import layout
from infraprof.capture.proc import find_tool, run_tool

NCU_REPORT = layout.NCU_REPORT
NCU_LOG = layout.NCU_LOG
PERMISSION_FIXES = (
    "GPU performance counters are restricted to admin users (ERR_NVGPUCTRPERM). Fixes: run "
    "the capture as root (sudo); or allow all users: add `options nvidia "
    "NVreg_RestrictProfilingToAdminUsers=0` to /etc/modprobe.d/nvidia-profiling.conf and "
    "reboot (or reload the driver); in a container add `--cap-add SYS_ADMIN`. See "
    "docs/faq.md."
)
NCU_INSTALL_HINT = ("install Nsight Compute (Debian 12: `sudo make tools`) or set INFRAPROF_NCU "
                    "to the ncu binary")


@dataclass(frozen=True)
class NcuOptions:
    """What to profile. ``kernel_regex`` matches the function name (ncu ``regex:``)."""

    set_name: str = "full"
    kernel_regex: str | None = None
    launch_skip: int | None = None
    launch_count: int | None = None
    clock_control: str = "none"
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class NcuOutcome:
    status: str
    message: str
    report: Path | None
    returncode: int | None
    argv: tuple[str, ...] = ()

    def to_manifest(self) -> dict[str, object]:
        return {"status": self.status, "message": self.message,
                "report": self.report.name if self.report else None,
                "returncode": self.returncode, "command": shlex.join(self.argv)}


def ncu_argv(ncu: str, opts: NcuOptions, output: Path, command: Sequence[str]) -> list[str]:
    """The ncu command line writing ``output`` (a ``.ncu-rep`` path)."""
    argv = [ncu, "--set", opts.set_name, "--clock-control", opts.clock_control,
            "--target-processes", "all", "--force-overwrite",
            "--export", str(output.with_suffix(""))]
    if opts.kernel_regex:
        argv += ["--kernel-name", f"regex:{opts.kernel_regex}"]
    if opts.launch_skip is not None:
        argv += ["--launch-skip", str(opts.launch_skip)]
    if opts.launch_count is not None:
        argv += ["--launch-count", str(opts.launch_count)]
    return [*argv, *command]


def run_ncu(command: Sequence[str], folder: Path, opts: NcuOptions) -> NcuOutcome:
    """Profile ``command`` with ncu into ``folder``; never raises for tool problems."""
    ncu = find_tool("ncu", "INFRAPROF_NCU")
    if ncu is None:
        return NcuOutcome("missing", f"ncu not found; {NCU_INSTALL_HINT}", None, None)
    report = folder / NCU_REPORT
    argv = ncu_argv(ncu, opts, report, command)
    run = run_tool(argv, timeout_s=opts.timeout_s)
    text = run.stdout + run.stderr
    (folder / NCU_LOG).write_text(text, encoding="utf-8", errors="replace")
    have = report if report.is_file() and report.stat().st_size > 0 else None
    if run.timed_out:
        return NcuOutcome("timeout", f"ncu did not finish in {opts.timeout_s:.0f} s and was "
                          "stopped", have, run.returncode, tuple(argv))
    if "ERR_NVGPUCTRPERM" in text:
        return NcuOutcome("permission", PERMISSION_FIXES, have, run.returncode, tuple(argv))
    if "No kernels were profiled" in text or have is None:
        why = ("ncu profiled no kernels (no usable GPU, or --kernel/--launch-skip matched no "
               "launch)")
        return NcuOutcome("no-kernels", why, have, run.returncode, tuple(argv))
    if run.returncode != 0 and "==ERROR==" in text:
        last = [ln for ln in text.splitlines() if "==ERROR==" in ln][-1]
        return NcuOutcome("failed", last.strip(), have, run.returncode, tuple(argv))
    return NcuOutcome("ok", f"ncu report: {report.name}", have, run.returncode, tuple(argv))
