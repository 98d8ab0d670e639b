"""The registry: every analysis, in the order it runs, and the settings that tune them.

:data:`ANALYSES` is an ordered list (as pyinstrument's processors are): an analysis runs after
the ones whose outputs it reads (``requires``), and findings come out in list order before
ranking. Adding an analysis is one module declaring an :class:`~infraprof.analyses.base.Analysis`
plus one entry here (checklist: ``docs/architecture.md``).

:func:`build_config` turns a config file's table and command-line values into an
:class:`AnalysisConfig` (params per analysis, what is disabled, and where every value came
from); :func:`run_analyses` runs the enabled analyses on one :class:`AnalysisContext`.

``--disable ID`` takes an analysis id (its findings and tables go, and so do analyses that
require it) or a finding id / pattern (``gap.sync``, ``gap.*``: those findings are dropped
after every analysis ran, so other analyses still see them).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infraprof.analyses.attribution import ATTRIBUTION
from infraprof.analyses.base import Analysis, Output, Setting
from infraprof.analyses.communication import COMMUNICATION
from infraprof.analyses.context import AnalysisContext
from infraprof.analyses.copies import COPIES
from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_findings import GAPS
from infraprof.analyses.host_bound import HOST_BOUND
from infraprof.analyses.host_profile import HOST_PROFILE
from infraprof.analyses.kernel_classes import KERNEL_CLASSES
from infraprof.analyses.kernel_sequences import TINY_KERNELS
from infraprof.analyses.lanes import (
    SIDE_LANE,
    RunningSteps,
    run_two_lanes,
    side_lane_fits,
)
from infraprof.analyses.launch import LAUNCH
from infraprof.analyses.ncu_findings import NCU, NCU_SUGGESTION
from infraprof.analyses.nvtx_proj import NVTX
from infraprof.analyses.python_frames import PYTHON
from infraprof.analyses.run_metrics import RUN_METRICS
from infraprof.analyses.summary import SUMMARY
from infraprof.analyses.timeline import TIMELINE
from infraprof.config import CLI_SOURCE, DEFAULT_SOURCE, ConfigValue, parse_setting
from infraprof.errors import UsageError
from infraprof.memory import between_steps

ANALYSES: tuple[Analysis, ...] = (
    SUMMARY, TIMELINE, ATTRIBUTION, GAPS, HOST_BOUND, NCU_SUGGESTION, LAUNCH, COPIES, NVTX,
    PYTHON, NCU, RUN_METRICS, KERNEL_CLASSES, COMMUNICATION, TINY_KERNELS, HOST_PROFILE,
)

RELEASED_AFTER: dict[str, tuple[str, ...]] = {
    "attribution": ("gpu_ops",),
    "gaps": ("native_pools", "python_pools"),
    "launch": ("launches",),
    "run_metrics": ("launch_latency",),
    "communication": ("classified_kernels",),
}
"""Context values (:meth:`AnalysisContext.release`) dropped once the keyed analysis ran or was
skipped: what no later analysis reads (``gpu_ops`` after ``attribution``: the later readers of
the operations, ``during_wait``, the NVTX projection and the step metrics, take unsorted
columns with :meth:`~infraprof.model.Trace.op_columns`; the frame pools after ``gaps``; the
launch join after ``launch``: ``run_metrics`` takes only the latencies, which the release
keeps, 4 bytes a launch, until ``run_metrics`` ran; the classified
kernels after ``communication``: the kernel classes' output keeps only its per-device sums).
A renderer that reads a dropped value computes it again, and so does an analysis of the
other lane (:mod:`~infraprof.analyses.lanes`) that reads it later: the same value."""

REPORT_SETTINGS: tuple[Setting, ...] = (
    Setting("top", "top", "int", "rows per table and findings shown (10)"),
    Setting("min-impact", "min_impact_ns", "duration",
            "hide findings that recover less than this (0; informational ones stay)"),
)
DISABLE_KEY = "disable"


@dataclass(frozen=True)
class AnalysisConfig:
    """Effective settings: ``params`` (analysis id → params object), ``disabled`` (analysis
    ids and finding-id patterns), report options, and every value's source."""

    params: dict[str, Any] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    top: int = 10
    min_impact_ns: int = 0
    values: dict[str, ConfigValue] = field(default_factory=dict)


def analysis_ids() -> list[str]:
    return [a.id for a in ANALYSES]


def finding_ids() -> list[str]:
    """Every finding id any registered analysis can emit (``docs/findings.md`` lists each)."""
    return [fid for a in ANALYSES for fid in a.finding_ids]


def all_settings() -> list[tuple[str, Setting]]:
    """``(owner, setting)`` for every key: owner ``report`` or an analysis id."""
    return [("report", s) for s in REPORT_SETTINGS] + [
        (a.id, s) for a in ANALYSES for s in a.settings]


def _check_disable(patterns: Iterable[str], source: str) -> frozenset[str]:
    by_id = {a.id: a for a in ANALYSES}
    known = finding_ids()
    out = set()
    for pattern in patterns:
        item = str(pattern).strip()
        if item in by_id and not by_id[item].optional:
            raise UsageError(f"{source}: analysis {item!r} cannot be disabled (the report is "
                             "built on it)")
        if item not in by_id and not fnmatch.filter(known, item):
            raise UsageError(
                f"{source}: --disable {item!r} names no analysis or finding; analyses: "
                f"{', '.join(a.id for a in ANALYSES if a.optional)}; findings: "
                f"{', '.join(known)}")
        out.add(item)
    return frozenset(out)


def _effective(table: Mapping[str, Any], table_source: str, cli: Mapping[str, Any]
               ) -> dict[str, ConfigValue]:
    """Every known key's value and source; unknown keys in the file are usage errors."""
    keys = {s.key: s for _, s in all_settings()}
    unknown = sorted(set(table) - set(keys) - {DISABLE_KEY})
    if unknown:
        raise UsageError(f"{table_source}: unknown setting(s) {', '.join(unknown)}; run "
                         "`infraprof config` for the list")
    values: dict[str, ConfigValue] = {}
    for key, setting in keys.items():
        if cli.get(key) is not None:
            values[key] = ConfigValue(parse_setting(setting.kind, cli[key], f"--{key}"),
                                      CLI_SOURCE)
        elif key in table:
            values[key] = ConfigValue(parse_setting(setting.kind, table[key],
                                                    f"{table_source}: {key}"), table_source)
    return values


def build_config(table: Mapping[str, Any] | None = None, table_source: str = DEFAULT_SOURCE,
                 cli: Mapping[str, Any] | None = None) -> AnalysisConfig:
    """Defaults, then ``table`` (a config file's analysis table from ``table_source``), then
    ``cli`` (flag values; None means not given; ``disable`` adds to the file's list)."""
    table, cli = dict(table or {}), dict(cli or {})
    values = _effective(table, table_source, cli)
    params: dict[str, Any] = {}
    for analysis in ANALYSES:
        given = {s.field: values[s.key].value for s in analysis.settings if s.key in values}
        params[analysis.id] = replace(analysis.params_type(), **given)
    from_file = table.get(DISABLE_KEY, [])
    if isinstance(from_file, str) or not isinstance(from_file, list):
        raise UsageError(f"{table_source}: disable must be a list of ids, got {from_file!r}")
    disabled = _check_disable(from_file, table_source) | _check_disable(
        cli.get(DISABLE_KEY) or [], "--disable")
    if disabled:
        sources = [s for s, given in ((table_source, from_file),
                                      (CLI_SOURCE, cli.get(DISABLE_KEY))) if given]
        values[DISABLE_KEY] = ConfigValue(sorted(disabled), " + ".join(sources))
    report = {s.field: values[s.key].value for s in REPORT_SETTINGS if s.key in values}
    if report.get("top", 1) < 1:
        raise UsageError(f"{values['top'].source}: top must be at least 1")
    return AnalysisConfig(params=params, disabled=disabled, values=values, **report)


def finding_disabled(finding_id: str, disabled: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(finding_id, pattern) for pattern in disabled)


def run_analyses(ctx: AnalysisContext, disabled: frozenset[str] = frozenset(),
                 progress: Callable[[str], None] | None = None,
                 lanes: int | None = None) -> list[Finding]:
    """Run every enabled analysis, storing each output in ``ctx.outputs`` (in registry
    order); return the findings (unranked, disabled finding ids dropped). ``progress`` is
    called with a status line before each analysis. ``lanes``: 1 runs them one after the
    other in registry order, 2 runs the side lane on a second thread
    (:mod:`~infraprof.analyses.lanes`); default: 2 when the trace's memory estimate fits
    (:func:`~infraprof.analyses.lanes.side_lane_fits`). The findings are the same."""
    between_steps()  # what reading the trace freed
    running = RunningSteps(progress)

    def step(analysis: Analysis) -> None:
        if analysis.id not in disabled and all(r in ctx.outputs for r in analysis.requires):
            params = ctx.params_of(analysis.id, analysis.params_type())
            with running.step(analysis.id):
                ctx.outputs[analysis.id] = analysis.run(ctx, params)
        ctx.release(RELEASED_AFTER.get(analysis.id, ()))
        between_steps()  # its temporaries back to the OS, unless the next step reuses them

    if (lanes if lanes is not None else 2 if side_lane_fits(ctx.trace) else 1) >= 2:
        side = [a for a in ANALYSES if a.id in SIDE_LANE]
        main = [a for a in ANALYSES if a.id not in SIDE_LANE]
        position = {a.id: at for at, a in enumerate(ANALYSES)}
        run_two_lanes(main, side, step, position)
        ran = dict(ctx.outputs)  # back in registry order (any other key first, as it was)
        ctx.outputs.clear()
        ctx.outputs.update((key, ran[key]) for key in sorted(
            ran, key=lambda key: position.get(key, -1)))
    else:
        for analysis in ANALYSES:
            step(analysis)
    return [f for output in ctx.outputs.values() for f in output.findings
            if not finding_disabled(f.id, disabled)]


def output_of(ctx: AnalysisContext, analysis_id: str) -> Output:
    """The output of ``analysis_id`` (empty when it did not run)."""
    return ctx.outputs.get(analysis_id, Output())
