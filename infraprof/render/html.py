"""``--format html``: one self-contained interactive report (plotly), readable offline.

plotly.js is embedded once (``include_plotlyjs=True`` on the first figure, ``False`` on the
rest), so the single file needs no network: no ``<script src>``, ``<link>`` or web fonts. The
page holds the header, the ranked findings with collapsible evidence, and the figures:

* the GPU timeline, one row per device/stream plus one row of idle gaps per device, each gap
  coloured by its dominant attributed cause, with the full attribution as hover text;
* GPU idle by cause, and the kernel time breakdown;
* warp-stall bars and a roofline scatter when ncu findings are present;

then the tables of :func:`~infraprof.ranking.sections.report_sections` (the same as the
terminal and Markdown reports: GPU busy, kernels, API, memory, NVTX, py-spy frames, host stacks
during GPU idle).

Large traces are downsampled for drawing (:mod:`infraprof.ranking.timeline_view`), and the page
says how: a row with more than
``max_ops_per_row`` operations keeps only its ``max_ops_per_row - 1`` widest idle gaps between
operations and draws each run of operations between them as one bar (hover: how many), and at
most ``max_gaps`` gaps are drawn (the longest). Every name from the trace is HTML-escaped:
with :func:`esc` in the page, with :func:`ptext` (``& < >`` only, the entities plotly decodes)
in plotly labels and hover text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from infraprof._version import __version__
from infraprof.ranking import Report
from infraprof.ranking.sections import (
    Cell,
    Column,
    Header,
    Section,
    format_cell,
    ranked,
    report_header,
    report_sections,
)
from infraprof.ranking.timeline_view import drawn_gaps, stream_bars
from infraprof.render.evidence import evidence_lines
from infraprof.render.html_parts import (
    CAUSE_COLORS,
    PAGE_CSS,
    esc,
    kernel_class_figure,
    kernel_figure,
    ncu_figures,
    ptext,
)
from infraprof.tables import decode_tid
from infraprof.units import fmt_ns, fmt_pct

file_extension = ".html"
MAX_OPS_PER_ROW = 5000
MAX_GAPS = 5000
KIND_COLORS = {"kernel": "#4c78a8", "memcpy": "#2ca02c", "memset": "#b279a2"}
_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass
class _Bars:
    """Horizontal bars of one legend entry of the timeline."""

    rows: list[str] = field(default_factory=list)
    base_ms: list[float] = field(default_factory=list)
    width_ms: list[float] = field(default_factory=list)
    hover: list[str] = field(default_factory=list)

    def add(self, row: str, start_ns: int, end_ns: int, origin_ns: int, hover: str) -> None:
        self.rows.append(row)
        self.base_ms.append((start_ns - origin_ns) / 1e6)
        self.width_ms.append((end_ns - start_ns) / 1e6)
        self.hover.append(hover)


def _op_bars(report: Report, max_ops: int, notes: list[str]) -> tuple[dict[str, _Bars], list[str]]:
    origin = report.span_start_ns
    bars: dict[str, _Bars] = {}
    rows: list[str] = []
    for sb in stream_bars(report, max_ops):
        row = f"GPU {sb.device_id} · stream {sb.stream_id}"
        rows.append(row)
        if sb.downsampled:
            notes.append(f"{row}: {sb.ops} operations drawn as {len(sb.starts)} bars "
                         f"(operations at most {fmt_ns(sb.widest_merged_ns)} apart merged into "
                         "one bar).")
        for start, end, count, kind, name in zip(sb.starts, sb.ends, sb.counts, sb.kinds,
                                                 sb.names, strict=True):
            if not sb.downsampled:
                hover = (f"<b>{ptext(name)}</b><br>{kind} · {fmt_ns(end - start)}<br>"
                         f"at {fmt_ns(start - origin)}")
            else:
                label = ptext(name) + (f" and {count - 1} more" if count > 1 else "")
                kind = kind if count == 1 else "merged"
                hover = (f"<b>{label}</b><br>{count} op(s) within {fmt_ns(end - start)}<br>"
                         f"at {fmt_ns(start - origin)}")
            bars.setdefault(kind, _Bars()).add(row, start, end, origin, hover)
    return bars, rows


def _gap_hover(report: Report, g: Any) -> str:
    parts = ", ".join(f"{k} {fmt_ns(v)}" for k, v in sorted(g.parts.items(), key=lambda kv: -kv[1]))
    lines = [f"<b>GPU idle {fmt_ns(g.dur_ns)}</b> · cause: {ptext(g.category)}",
             f"split: {ptext(parts)}",
             f"next: {ptext(g.next_op['kind'])} {ptext(g.next_op['name'])} "
             f"(stream {g.next_op['stream_id']})"]
    if g.launch:
        lines.append(f"launched by {ptext(g.launch['name'])}, "
                     f"{fmt_ns(int(g.launch['end_ns']) - int(g.launch['start_ns']))}")
    if g.global_tid is not None:
        lines.append(f"thread {int(decode_tid(g.global_tid))} "
                     f"{ptext(report.trace.thread_name(g.global_tid) or '')}")
    if g.nvtx:
        lines.append(f"NVTX: {ptext(g.nvtx)}")
    for c in g.calls[:3]:
        lines.append(f"call {ptext(c['name'])} ({ptext(c['category'])}) {fmt_ns(c['dur_ns'])}")
    if g.drain:
        lines.append(f"drain: {ptext(g.drain['name'])} blocked "
                     f"{fmt_ns(g.drain['blocked_before_gap_ns'])} before the gap")
    if g.exposed_by:
        lines.append(f"host work exposed by {ptext(g.exposed_by)}")
    lines.append(f"at {fmt_ns(g.start_ns - report.span_start_ns)}")
    return "<br>".join(lines)


def _gap_bars(report: Report, max_gaps: int, notes: list[str]) -> dict[str, _Bars]:
    gaps = drawn_gaps(report, max_gaps)
    origin = report.span_start_ns
    bars: dict[str, _Bars] = {}
    if len(gaps.attributed) < gaps.total:
        notes.append(f"Idle gaps: the {max_gaps} longest of {gaps.total} are drawn "
                     f"({fmt_pct(gaps.drawn_share)} of the attributed idle time).")
    for g in gaps.attributed:
        bars.setdefault(g.category, _Bars()).add(f"GPU {g.device_id} · idle", g.start_ns,
                                                 g.end_ns, origin, _gap_hover(report, g))
    for device, s, e in gaps.unattributed:
        bars.setdefault("unattributed", _Bars()).add(
            f"GPU {device} · idle", s, e, origin, f"GPU idle {fmt_ns(e - s)}")
    return bars


def timeline_figure(report: Report, max_ops: int = MAX_OPS_PER_ROW, max_gaps: int = MAX_GAPS
                    ) -> tuple[go.Figure | None, list[str]]:
    """The GPU timeline figure and the downsampling notes (``None`` without GPU activity)."""
    if not report.trace.has_gpu_activity:
        return None, []
    notes: list[str] = []
    ops, op_rows = _op_bars(report, max_ops, notes)
    gaps = _gap_bars(report, max_gaps, notes)
    devices = sorted({int(r.split()[1]) for r in op_rows})
    rows = [r for d in devices for r in [f"GPU {d} · idle",
                                         *[x for x in op_rows if x.startswith(f"GPU {d} ")]]]
    fig = go.Figure()
    kinds = {**KIND_COLORS, "merged": "#72b7b2"}
    traces = [*(("idle: " + k, CAUSE_COLORS.get(k, "#9d9d9d"), b) for k, b in gaps.items()),
              *((k, kinds.get(k, "#9d9d9d"), b) for k, b in ops.items())]
    for name, color, b in traces:
        fig.add_trace(go.Bar(
            y=b.rows, x=b.width_ms, base=b.base_ms, orientation="h", name=ptext(name),
            marker={"color": color, "line": {"width": 0}},
            hovertext=b.hover, hoverinfo="text", width=0.8))
    fig.update_layout(
        barmode="overlay", template="plotly_white", height=160 + 44 * len(rows),
        margin={"l": 10, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": 1.02,
                                                             "yanchor": "bottom"},
        xaxis={"title": {"text": "time since trace start (ms)"}},
        yaxis={"categoryorder": "array", "categoryarray": rows[::-1], "automargin": True},
        hoverlabel={"align": "left"})
    return fig, notes


def idle_figure(report: Report) -> go.Figure | None:
    a = report.analysis
    items = sorted(((k, v) for k, v in (a.idle_breakdown_ns.items() if a else []) if v > 0),
                   key=lambda kv: kv[1])
    if not items:
        return None
    fig = go.Figure(go.Bar(
        y=[ptext(k) for k, _ in items], x=[v / 1e6 for _, v in items], orientation="h",
        marker={"color": [CAUSE_COLORS.get(k, "#9d9d9d") for k, _ in items]},
        hovertext=[f"{ptext(k)}: {fmt_ns(v)}" for k, v in items], hoverinfo="text"))
    fig.update_layout(template="plotly_white", height=120 + 30 * len(items),
                      margin={"l": 10, "r": 10, "t": 20, "b": 40},
                      xaxis={"title": {"text": "GPU idle (ms)"}}, yaxis={"automargin": True})
    return fig


def cell(value: Cell, col: Column) -> str:
    """The one place a cell becomes HTML: formatted by kind, then :func:`esc`."""
    return f"<td class='{col.align[0]}'>{esc(format_cell(value, col.kind))}</td>"


def _section(section: Section) -> str:
    out = [f"<h2>{esc(section.title)}</h2>"]
    if section.rows:
        head = "".join(f"<th>{esc(c.name)}</th>" for c in section.columns)
        body = "".join("<tr>" + "".join(cell(v, c) for v, c in zip(
            row, section.columns, strict=True)) + "</tr>" for row in section.rows)
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    out += [f"<p class='meta'>{esc(note)}</p>" for note in section.notes]
    return "\n".join(out)


def _header(header: Header) -> str:
    bits = [*header.producer,
            f"span {fmt_ns(header.span_ns)}", f"infraprof {__version__}"]
    out = [f"<h1>infraprof report: {esc(header.name)}</h1>",
           f"<p class='meta'>{esc(' · '.join(bits))}<br>source: {esc(header.source)}</p>"]
    if header.command:
        out.append(f"<p class='meta'>command: <code>{esc(header.command)}</code></p>")
    if header.headline:
        out.append(f"<p><b>{esc(header.headline)}</b></p>")
    if header.gpus_used:
        out.append(f"<p>GPUs used: {esc(', '.join(header.gpus_used))} (node has "
                   f"{header.gpus_in_node}) · <b>GPU busy {fmt_pct(header.busy_share)}</b> of "
                   f"the active span ({fmt_ns(header.busy_ns)} of "
                   f"{fmt_ns(header.active_span_ns)})</p>")
    else:
        out.append("<p>No GPU activity (kernels, copies, memsets) in this trace.</p>")
    return "\n".join(out)


def _evidence(report: Report, top: int) -> str:
    """One collapsible block per ranked finding, numbered as in the findings table."""
    out = []
    for i, f in ranked(report, top):
        lines = "".join(f"<li>{esc(x)}</li>" for x in evidence_lines(f))
        fix = f"<p><b>Fix:</b> {esc(f.recommendation)}</p>" if f.recommendation else ""
        out.append(f"<details><summary>#{i} {esc(f.id)} · {esc(f.severity)} · recoverable "
                   f"{fmt_ns(f.impact_ns)}</summary><p>{esc(f.title)}</p><ul>{lines}</ul>"
                   f"{fix}</details>")
    return "\n".join(out)


def _figure(fig: go.Figure, div_id: str, first: bool) -> str:
    return str(pio.to_html(fig, include_plotlyjs=first, full_html=False, div_id=div_id,
                           config=_CONFIG, default_height=f"{fig.layout.height or 400}px"))


def render_html(report: Report, top: int = 20, max_ops_per_row: int = MAX_OPS_PER_ROW,
                max_gaps: int = MAX_GAPS) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    timeline, notes = timeline_figure(report, max_ops_per_row, max_gaps)
    figures: list[tuple[str, str, go.Figure | None]] = [
        ("ip-timeline", "GPU timeline (idle gaps coloured by attributed cause)", timeline),
        ("ip-idle", "GPU idle by cause", idle_figure(report)),
        ("ip-kernels", "Kernel time breakdown", kernel_figure(report)),
        ("ip-kernel-classes", "Kernel time per class", kernel_class_figure(report)),
        *[(f"ip-ncu-{i}", title, f) for i, (title, f) in enumerate(ncu_figures(report))],
    ]
    sections = report_sections(report, top)
    lead = next(i for i, s in enumerate(sections) if s.key == "findings") + 1
    header = report_header(report)
    body: list[str] = [_header(header), *(_section(s) for s in sections[:lead]),
                       _evidence(report, top)]
    first = True
    for div_id, title, fig in figures:
        if fig is None:
            continue
        body.append(f"<h2>{esc(title)}</h2>")
        if div_id == "ip-timeline":
            body.append("<p class='meta'>Each idle gap is coloured by its dominant cause; "
                        "hover it for the split between causes and the evidence. Drag to zoom, "
                        "double-click to reset.</p>")
            body += [f"<p class='note'>Downsampled for drawing: {esc(n)}</p>" for n in notes]
        body.append(_figure(fig, div_id, first))
        first = False
    body += [_section(section) for section in sections[lead:]]
    title = esc("infraprof report: " + header.name)
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<meta name='generator' content='infraprof {__version__}'>\n"
            f"<title>{title}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")


__all__: Sequence[str] = ("esc", "render_html", "timeline_figure")
