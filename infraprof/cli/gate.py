"""``infraprof compare``, ``infraprof gate`` and ``infraprof baseline save|show|list``.

Inputs (each ``--base``/``--cand``, repeatable for K runs per side): a capture folder, an nsys
report or SQLite export, a PyTorch profiler (Kineto) trace, ``analyze --format json`` output, or
gate metrics JSON; or runs from a baseline store (``--base-db``). ``gate`` exits 0 (pass), 1
(regression, or a missing metric with ``missing = "fail"``, or inconclusive with ``--strict``),
3 (bad input), 2 (usage).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from infraprof.cli.output import TextKind, color_wanted, emit
from infraprof.errors import InputError, RegressionDetected, UsageError
from infraprof.text_safety import printable

if TYPE_CHECKING:  # the gate modules load numpy/scipy/sqlite-utils: imported when run
    from rich.table import Table

    from infraprof.gate.metrics import RunMetrics
    from infraprof.gate.verdict import GateResult


class GateFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    github = "github"
    openmetrics = "openmetrics"
    gitlab = "gitlab"


class ListFormat(str, Enum):
    table = "table"
    json = "json"


_SUFFIX = {".json": GateFormat.json, ".md": GateFormat.markdown, ".txt": GateFormat.table,
           ".prom": GateFormat.openmetrics}


def _render(result: GateResult, fmt: GateFormat, color: bool, width: int) -> str:
    from infraprof.gate.github import render_github, write_step_summary
    from infraprof.gate.gitlab import render_gitlab
    from infraprof.gate.openmetrics import render_openmetrics
    from infraprof.gate.text import render_markdown, render_table

    if fmt is GateFormat.json:
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt is GateFormat.markdown:
        return render_markdown(result)
    if fmt is GateFormat.github:
        write_step_summary(result)
        return render_github(result)
    if fmt is GateFormat.openmetrics:
        return render_openmetrics(result)
    if fmt is GateFormat.gitlab:
        return render_gitlab(result)
    return render_table(result, width=width, color=color)


def _overrides(**values: Any) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if v is not None and v != []}
    return out


def _load_side(paths: list[Path], step: str, what: str) -> list[RunMetrics]:
    from infraprof.gate.metrics import load_side

    return load_side(paths, step, what)


_BaseOpt = Annotated[list[Path] | None, typer.Option(
    "--base", "-b", help="Baseline run (repeat for K runs): capture folder, nsys report/SQLite, "
    "Kineto trace, JSON; a `capture --repeat K` folder counts as K runs.")]
_CandOpt = Annotated[list[Path] | None, typer.Option("--cand", "-c",
                                              help="Candidate run (repeatable).")]
_BaseDbOpt = Annotated[Path | None, typer.Option(
    "--base-db", help="Take baseline runs from this store (see `infraprof baseline`).")]
_BaseNameOpt = Annotated[str, typer.Option("--base-name", help="Store: baseline name.")]
_BaseBranchOpt = Annotated[str | None, typer.Option("--base-branch", help="Store: branch.")]
_BaseGpuOpt = Annotated[str | None, typer.Option("--base-gpu", help="Store: GPU name.")]
_BaseLastOpt = Annotated[int, typer.Option("--base-last", min=1, help="Store: newest K runs.")]
_FormatOpt = Annotated[GateFormat | None, typer.Option(
    "--format", "-f", help="Output format (default: from -o suffix, else table). github: "
    "annotations + job summary in $GITHUB_STEP_SUMMARY.")]
_OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")]
_JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Also write JUnit XML here.")]
_ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="TOML file with the gate policy (default: the nearest infraprof.toml, or "
    "pyproject.toml with a tool.infraprof.gate table).")]
_MaxRegressionOpt = Annotated[str | None, typer.Option(
    "--max-regression", help="Practical threshold, e.g. 5% (or 250us absolute).")]
_AbsThresholdOpt = Annotated[str | None, typer.Option(
    "--abs-threshold", help="Absolute threshold in the metric unit (ns: 250us).")]
_AlphaOpt = Annotated[float | None, typer.Option(
    "--alpha", help="Significance level (default 0.01).")]
_MinSamplesOpt = Annotated[int | None, typer.Option(
    "--min-samples", help="Samples per side (default 20).")]
_MinRunsOpt = Annotated[int | None, typer.Option(
    "--min-runs", help="Runs per side for run-level metrics (default 3).")]
_MissingOpt = Annotated[str | None, typer.Option(
    "--missing", help="fail|warn when a metric is on one side only (default fail).")]
_StrictOpt = Annotated[bool | None, typer.Option(
    "--strict/--no-strict", help="Fail on inconclusive metrics too.")]
_MetricOpt = Annotated[list[str] | None, typer.Option(
    "--metric", "-m", help="Only metrics matching this pattern (repeatable), e.g. 'nvtx:*'.")]
_ExcludeOpt = Annotated[list[str] | None, typer.Option("--exclude", help="Skip matching metrics.")]
_StepOpt = Annotated[str | None, typer.Option(
    "--step", help="Step source: auto, none, nvtx:NAME or sync:API.")]
_WidthOpt = Annotated[int | None, typer.Option("--width", min=40, help="Terminal width.")]
_NoColorOpt = Annotated[bool, typer.Option("--no-color", help="No ANSI colours.")]


def _baseline_runs(base: list[Path], base_db: Path | None, step: str, name: str,
                   branch: str | None, gpu: str | None, last: int) -> list[RunMetrics]:
    """The baseline side: the given runs, then the matching runs of the store."""
    from infraprof.gate import baseline as store

    if not base and base_db is None:
        raise UsageError("no baseline: give --base PATH (repeatable) or --base-db STORE")
    runs = _load_side(list(base), step, "baseline")
    if base_db is not None:
        stored = store.query_runs(base_db, name=name, branch=branch, gpu=gpu, last=last)
        if not stored:
            raise InputError(f"{base_db}: no stored runs match name={name!r}"
                             f"{f', branch={branch!r}' if branch else ''}"
                             f"{f', gpu={gpu!r}' if gpu else ''}")
        runs += [s.metrics for s in stored]
    return runs


def _write_result(result: GateResult, output_format: GateFormat | None, output: Path | None,
                  junit: Path | None, width: int | None, no_color: bool,
                  inputs: list[Path | None]) -> None:
    """The verdict in the chosen format (stdout or ``output``) and, when asked, JUnit XML."""
    from infraprof.gate.junit import render_junit

    fmt = output_format or (_SUFFIX.get(output.suffix.lower(), GateFormat.table)
                            if output else GateFormat.table)
    color = output is None and color_wanted(no_color)
    cols = width or (Console().width if output is None and sys.stdout.isatty() else 120)
    kind: TextKind = ("json" if fmt in (GateFormat.json, GateFormat.gitlab) else
                      "github" if fmt is GateFormat.github else "ansi" if color else "text")
    emit(_render(result, fmt, color, cols), output, inputs=inputs, kind=kind)
    if junit is not None:
        emit(render_junit(result), junit, "the JUnit XML", inputs, option="--junit")


def _raise_on_failure(result: GateResult) -> None:
    if result.failed:
        failed = [r.metric for r in result.results if r.failed]
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5
                                         else "")
        raise RegressionDetected(f"gate failed on {len(failed)} metric(s): {shown}")


def _make(is_gate: bool) -> Callable[..., None]:
    def command(
        base: _BaseOpt = None, cand: _CandOpt = None, base_db: _BaseDbOpt = None,
        base_name: _BaseNameOpt = "main", base_branch: _BaseBranchOpt = None,
        base_gpu: _BaseGpuOpt = None, base_last: _BaseLastOpt = 5,
        output_format: _FormatOpt = None, output: _OutputOpt = None, junit: _JunitOpt = None,
        config: _ConfigOpt = None, max_regression: _MaxRegressionOpt = None,
        abs_threshold: _AbsThresholdOpt = None, alpha: _AlphaOpt = None,
        min_samples: _MinSamplesOpt = None, min_runs: _MinRunsOpt = None,
        missing: _MissingOpt = None, strict: _StrictOpt = None, metric: _MetricOpt = None,
        exclude: _ExcludeOpt = None, step: _StepOpt = None, width: _WidthOpt = None,
        no_color: _NoColorOpt = False,
    ) -> None:
        from infraprof.gate.policy import load_policy
        from infraprof.gate.verdict import compare
        from infraprof.outputs import refuse_inputs

        base, cand = list(base or ()), list(cand or ())
        policy = load_policy(config, overrides=_overrides(
            max_regression=max_regression, abs_threshold=abs_threshold, alpha=alpha,
            min_samples=min_samples, min_runs=min_runs, missing=missing, strict=strict,
            metrics=list(metric or ()), step=step))
        if exclude:
            policy = replace(policy, exclude=(*policy.exclude, *exclude))
        if not cand:
            raise UsageError("no candidate run: give --cand PATH (repeatable)")
        inputs = [*base, *cand, base_db, config]
        refuse_inputs(output, inputs)
        refuse_inputs(junit, inputs, "--junit")
        base_runs = _baseline_runs(base, base_db, policy.step, base_name, base_branch,
                                   base_gpu, base_last)
        cand_runs = _load_side(list(cand), policy.step, "candidate")
        result = compare(base_runs, cand_runs, policy)
        _write_result(result, output_format, output, junit, width, no_color, inputs)
        if is_gate:
            _raise_on_failure(result)

    command.__name__ = "gate" if is_gate else "compare"
    command.__doc__ = (
        "Compare baseline and candidate runs and exit 1 on a regression (0 pass, 3 bad "
        "input). A metric regresses only when the change exceeds the practical threshold "
        "AND is statistically significant at --alpha (bootstrap CI of the median ratio, "
        "Mann-Whitney U on within-run samples, Welch t-test across runs)."
        if is_gate else
        "Compare baseline and candidate runs metric by metric (K runs per side): change, "
        "bootstrap confidence interval, Mann-Whitney p and a verdict. Always exits 0 on "
        "valid input; use `gate` for the exit code.")
    return command


compare_command = _make(is_gate=False)
gate_command = _make(is_gate=True)

baseline_app = typer.Typer(name="baseline", no_args_is_help=True, add_completion=False,
                           help="Store and inspect baseline runs (SQLite) for `gate "
                           "--base-db`.")


def _print_table(table: Table) -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=140, highlight=False).print(table)
    emit(buffer.getvalue(), None)


@baseline_app.command("save")
def baseline_save(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT...", help="Runs to store."),
    db: Path = typer.Option(..., "--db", help="Baseline store (created if missing)."),
    name: str = typer.Option("main", "--name", help="Baseline name."),
    commit: str | None = typer.Option(None, "--commit", help="Default: $GITHUB_SHA, "
                                      "$CI_COMMIT_SHA or git."),
    branch: str | None = typer.Option(None, "--branch", help="Default: CI env or git."),
    host: str | None = typer.Option(None, "--host", help="Default: this host name."),
    gpu: str | None = typer.Option(None, "--gpu", help="Default: GPU names in the trace."),
    step: str = typer.Option("auto", "--step", help="Step source: auto, none, nvtx:NAME, "
                             "sync:API."),
) -> None:
    """Extract the gate metrics of INPUT runs and store them (one transaction)."""
    from infraprof.gate import baseline as store
    from infraprof.gate.policy import check_step
    from infraprof.outputs import refuse_inputs

    refuse_inputs(db, inputs, "--db")
    runs = _load_side(list(inputs), check_step(step, "--step"), "input")
    ids = store.save_runs(db, runs, name=name, commit=commit, branch=branch, host=host,
                          gpu=gpu)
    emit(f"saved {len(ids)} run(s) to {db} as {name!r} (ids {', '.join(map(str, ids))})\n",
         None)


@baseline_app.command("list")
def baseline_list(
    db: Path = typer.Option(..., "--db", help="Baseline store."),
    name: str | None = typer.Option(None, "--name"),
    branch: str | None = typer.Option(None, "--branch"),
    gpu: str | None = typer.Option(None, "--gpu"),
    last: int = typer.Option(20, "--last", min=1, help="Newest N runs."),
    output_format: ListFormat = typer.Option(ListFormat.table, "--format", "-f"),
) -> None:
    """List stored runs, newest first."""
    from rich.table import Table

    from infraprof.gate import baseline as store

    runs = store.query_runs(db, name=name, branch=branch, gpu=gpu, last=last)
    if output_format is ListFormat.json:
        emit(json.dumps([r.to_dict() for r in runs], indent=2, ensure_ascii=False) + "\n", None,
             kind="json")
        return
    table = Table(title=f"{db}: {len(runs)} run(s)")
    for col in ("id", "name", "branch", "commit", "host", "gpu", "created (UTC)", "metrics"):
        table.add_column(col)
    for r in runs:
        table.add_row(*map(printable, (r.id, r.name, r.branch or "-", (r.commit or "-")[:12],
                                       r.host or "-", r.gpu or "-", r.created_utc,
                                       len(r.metrics.values))))
    _print_table(table)


@baseline_app.command("show")
def baseline_show(
    db: Path = typer.Option(..., "--db", help="Baseline store."),
    name: str | None = typer.Option(None, "--name"),
    branch: str | None = typer.Option(None, "--branch"),
    commit: str | None = typer.Option(None, "--commit", help="Commit (prefix)."),
    gpu: str | None = typer.Option(None, "--gpu"),
    last: int = typer.Option(1, "--last", min=1, help="Newest N runs."),
    metric: list[str] = typer.Option([], "--metric", "-m", help="Metric patterns."),
    output_format: ListFormat = typer.Option(ListFormat.table, "--format", "-f"),
) -> None:
    """Show the stored metric values of matching runs (newest first)."""
    import fnmatch

    from rich.table import Table

    from infraprof.gate import baseline as store

    runs = store.query_runs(db, name=name, branch=branch, commit=commit, gpu=gpu, last=last)
    if not runs:
        raise InputError(f"{db}: no stored runs match the filters")
    names = sorted({m for r in runs for m in r.metrics.values
                    if not metric or any(fnmatch.fnmatchcase(m, p) for p in metric)})
    if output_format is ListFormat.json:
        emit(json.dumps([{**r.to_dict(), "values": {m: r.metrics.values.get(m)
                                                      for m in names}} for r in runs],
                        indent=2, ensure_ascii=False) + "\n", None, kind="json")
        return
    table = Table(title=f"{db}: metric values")
    table.add_column("metric", overflow="fold")
    for r in runs:
        table.add_column(f"#{r.id} {(r.commit or '')[:8]}", justify="right")
    for m in names:
        table.add_row(printable(m), *[f"{r.metrics.values[m]:.6g}" if m in r.metrics.values
                                      else "-" for r in runs])
    _print_table(table)
