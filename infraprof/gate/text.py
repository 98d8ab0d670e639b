"""Terminal table and Markdown renderings of a :class:`~infraprof.gate.verdict.GateResult`.

The gate layer renders its own results (it must not import ``infraprof.render``). Values are
shown in their unit (ns scaled to µs/ms/s); ``change`` is relative to the baseline estimate;
``CI`` is the bootstrap ``1 − alpha`` interval of the change.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from infraprof.gate.verdict import GateResult, MetricResult, Verdict, fmt_value
from infraprof.text_safety import printable

_STYLE = {Verdict.REGRESSION: "bold red", Verdict.IMPROVEMENT: "green",
          Verdict.UNCHANGED: "dim", Verdict.INCONCLUSIVE: "yellow", Verdict.MISSING: "magenta"}
_ICON = {Verdict.REGRESSION: "❌", Verdict.IMPROVEMENT: "✅", Verdict.UNCHANGED: "➖",
         Verdict.INCONCLUSIVE: "❔", Verdict.MISSING: "⚠️"}
_ORDER = {Verdict.REGRESSION: 0, Verdict.MISSING: 1, Verdict.INCONCLUSIVE: 2,
          Verdict.IMPROVEMENT: 3, Verdict.UNCHANGED: 4}


def ordered(result: GateResult) -> list[MetricResult]:
    """Failures first, then by verdict severity, then by name."""
    return sorted(result.results, key=lambda r: (not r.failed, _ORDER[r.verdict], r.metric))


def _verdict_label(r: MetricResult) -> str:
    label = r.verdict.value
    if not r.gated:
        label += " (report-only)"
    if r.failed:
        label = "FAIL " + label
    return label


def render_table(result: GateResult, width: int = 120, color: bool = False) -> str:
    """A Rich table, one row per metric, then the headline."""
    table = Table(title="infraprof compare", expand=False, show_lines=False)
    for col, justify in (("metric", "left"), ("base", "right"), ("cand", "right"),
                         ("change", "right"), (f"{100 * (1 - result.policy.alpha):g}% CI",
                                               "right"),
                         ("p", "right"), ("n", "right"), ("verdict", "left")):
        table.add_column(col, justify=justify,  # type: ignore[arg-type]
                         overflow="fold" if col in ("metric", "verdict") else "ellipsis",
                         min_width=24 if col == "metric" else None,
                         no_wrap=col not in ("metric", "verdict"))
    for r in ordered(result):
        p = "-" if r.p_value is None else f"{r.p_value:.2g}"
        verdict = _verdict_label(r)
        if r.verdict is Verdict.INCONCLUSIVE and r.need:
            verdict += f" (need ≈{r.need}/side)"
        elif r.verdict is Verdict.MISSING:
            verdict += f" ({r.reason})"
        table.add_row(printable(r.metric), fmt_value(r.base, r.unit), fmt_value(r.cand, r.unit),
                      r.change_text(), r.ci_text(), p, f"{r.n_base}/{r.n_cand}", verdict,
                      style=_STYLE[r.verdict] if color else None)
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                      highlight=False)
    console.print(table)
    console.print(result.headline())
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return printable(text).replace("|", "\\|")


def render_markdown(result: GateResult, limit: int | None = None) -> str:
    """GitHub-flavoured Markdown: headline, then a table (at most ``limit`` rows)."""
    rows = ordered(result)
    lines = [f"### {'❌' if result.failed else '✅'} {result.headline()}", "",
             f"Baseline: {len(result.base_sources)} run(s) · candidate: "
             f"{len(result.cand_sources)} run(s) · alpha {result.policy.alpha:g} · "
             f"policy: {_md_escape(result.policy.source)}", "",
             "| | metric | base | cand | change | CI | p | n | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    shown = rows if limit is None else rows[:limit]
    for r in shown:
        p = "-" if r.p_value is None else f"{r.p_value:.2g}"
        verdict = _verdict_label(r) + (f": {r.reason}" if r.reason else "")
        lines.append(
            f"| {_ICON[r.verdict]} | `{_md_escape(r.metric)}` | {fmt_value(r.base, r.unit)} | "
            f"{fmt_value(r.cand, r.unit)} | {r.change_text()} | {r.ci_text()} | {p} | "
            f"{r.n_base}/{r.n_cand} | {_md_escape(verdict)} |")
    if limit is not None and len(rows) > limit:
        lines.append(f"\n…{len(rows) - limit} more metrics (see the JSON artifact)")
    return "\n".join(lines) + "\n"
