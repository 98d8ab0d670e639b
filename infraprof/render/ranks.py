"""Several inputs (``analyze A B C …``): the job's per-rank table and cross-rank findings as
JSON, terminal text, Markdown and HTML. Only lays out what the :class:`ManyReport` holds;
every name from a trace or a path is escaped for its format.

The per-input reports are in the JSON (``reports``, each identical to ``analyze -f json`` of
that input); the text formats list the inputs with their top finding and point there.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from infraprof.ranking.ranks import ManyReport
from infraprof.render.html_parts import esc
from infraprof.render.markdown import md_text
from infraprof.text_safety import printable
from infraprof.units import fmt_ns, fmt_pct

_COLUMNS = ("rank", "source", "GPU busy", "busy %", "top idle cause", "steps", "step P50",
            "step P99", "compute", "exposed comm", "last at", "top finding")


def render_many_json(many: ManyReport) -> str:
    """The multi-input JSON contract (``docs/json-schema.md``, *Several inputs*)."""
    return json.dumps(many.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _top_idle(row: dict[str, Any]) -> str:
    causes = {k: v for k, v in row["idle_by_cause_ns"].items() if v}
    if not causes:
        return "-"
    cause = max(sorted(causes), key=lambda c: causes[c])
    return f"{cause} {fmt_ns(causes[cause])}"


def _cells(row: dict[str, Any]) -> list[str]:
    top = row["top_finding"]
    return [str(row["rank"]), str(row["rank_source"]), fmt_ns(row["gpu_busy_ns"]),
            fmt_pct(row["busy_share"]), _top_idle(row), str(row["steps"]),
            fmt_ns(row["step_p50_ns"]), fmt_ns(row["step_p99_ns"]), fmt_ns(row["compute_ns"]),
            fmt_ns(row["exposed_comm_ns"]), f"{row['last_arrivals']}/{row['collectives']}",
            top["id"] if top else "-"]


def _inputs(many: ManyReport) -> list[tuple[str, str]]:
    """``(path, top finding title)`` per input."""
    out = []
    for report in many.reports:
        findings = report.get("findings") or []
        out.append((str(report["inputs"][0]["path"]),
                    str(findings[0]["title"]) if findings else "no findings"))
    return out


def _finding_lines(many: ManyReport, top: int, fmt: Callable[[object], str]) -> list[str]:
    if not many.findings:
        return ["No cross-rank findings: no straggler, no imbalance above the threshold."]
    return [f"{i}. [{f.severity}] {fmt(f.title)} — recovers {fmt_ns(f.impact_ns)} of job time"
            f" ({fmt(f.id)})" for i, f in enumerate(many.findings[:top], 1)]


def render_many_terminal(many: ManyReport, top: int = 10) -> str:
    """Plain text (names escaped with :func:`printable`)."""
    rows = [list(_COLUMNS)] + [[printable(c) for c in _cells(r)] for r in many.ranks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [f"infraprof: {len(many.reports)} inputs, {len(many.ranks)} ranks", "",
             "Per rank"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    lines += ["", "Cross-rank findings (by time the whole job would recover)"]
    lines += ["  " + line for line in _finding_lines(many, top, printable)]
    lines += ["", "Inputs (full reports: --format json)"]
    lines += [f"  {printable(p)}: {printable(t)}" for p, t in _inputs(many)]
    return "\n".join(lines) + "\n"


def render_many_markdown(many: ManyReport, top: int = 10) -> str:
    """GitHub-flavoured Markdown (names escaped with :func:`md_text`)."""
    lines = [f"# infraprof: {len(many.reports)} inputs, {len(many.ranks)} ranks", "",
             "## Per rank", "", "| " + " | ".join(_COLUMNS) + " |",
             "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(md_text(c) for c in _cells(r)) + " |" for r in many.ranks]
    lines += ["", "## Cross-rank findings", ""]
    lines += _finding_lines(many, top, md_text)
    lines += ["", "## Inputs", ""]
    lines += [f"- {md_text(p)}: {md_text(t)}" for p, t in _inputs(many)]
    return "\n".join(lines) + "\n"


def _lane(row: dict[str, Any], job_ns: int) -> str:
    """One rank's lane: its span on the job's clock, filled by its GPU busy share."""
    offset = row["offset_ns"] or 0
    left = 100 * offset / job_ns if job_ns else 0.0
    width = max(0.5, 100 * row["span_ns"] / job_ns) if job_ns else 100.0
    busy = 100 * float(row["busy_share"])
    return (f'<div class="lane"><span class="lbl">rank {esc(row["rank"])}</span>'
            f'<div class="track"><div class="span" style="left:{left:.3f}%;width:{width:.3f}%">'
            f'<div class="busy" style="width:{busy:.3f}%"></div></div></div>'
            f'<span class="val">{esc(fmt_pct(row["busy_share"]))} busy</span></div>')


def render_many_html(many: ManyReport, top: int = 10) -> str:
    """One self-contained page: per-rank lanes (span on the job clock, busy share), the
    per-rank table, the cross-rank findings and the inputs; every name HTML-escaped."""
    job_ns = max((int(r["offset_ns"] or 0) + int(r["span_ns"]) for r in many.ranks), default=0)
    head = "".join(f"<th>{esc(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in _cells(r)) + "</tr>"
                   for r in many.ranks)
    findings = "".join(f"<li>{line}</li>" for line in _finding_lines(many, top, esc))
    inputs = "".join(f"<li><code>{esc(p)}</code>: {esc(t)}</li>" for p, t in _inputs(many))
    lanes = "".join(_lane(r, job_ns) for r in many.ranks)
    title = html.escape(f"infraprof: {len(many.reports)} inputs, {len(many.ranks)} ranks")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title + "</title>"
        "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.lane{display:flex;align-items:center;"
        "margin:2px 0}.lbl{width:80px}.val{width:90px;padding-left:6px}.track{position:"
        "relative;flex:1;height:14px;background:#eee}.span{position:absolute;top:0;height:"
        "14px;background:#f4c7a1}.busy{height:14px;background:#2e7d32}</style></head><body>"
        f"<h1>{title}</h1><h2>Per-rank lanes (job clock; green: GPU busy share)</h2>{lanes}"
        f"<h2>Per rank</h2><table><tr>{head}</tr>{body}</table>"
        f"<h2>Cross-rank findings</h2><ol>{findings}</ol><h2>Inputs</h2><ul>{inputs}</ul>"
        "</body></html>\n")
