"""``--format html``: one self-contained interactive report (plotly), readable offline.

plotly.js is embedded once (``include_plotlyjs=True`` on the first figure, ``False`` on the
rest), so the single file needs no network: no ``<script src>``, ``<link>`` or web fonts. The
page holds the header, the ranked findings with collapsible evidence, and the figures:

* the GPU timeline, one row per device/stream plus one row of idle gaps per device, each gap
  coloured by its dominant attributed cause, with the full attribution as hover text;
* GPU idle by cause, and the kernel time breakdown;
* warp-stall bars and a roofline scatter when ncu findings are present;
* the top host stacks during GPU idle when the trace has CPU samples, and the py-spy frames when
  the report has them.

Large traces are downsampled for drawing, and the page says how: a row with more than
``max_ops_per_row`` operations keeps only its ``max_ops_per_row - 1`` widest idle gaps between
operations and draws each run of operations between them as one bar (hover: how many), and at
most ``max_gaps`` gaps are drawn (the longest). Every name from the trace is HTML-escaped:
with :func:`esc` in the page, with :func:`ptext` (``& < >`` only, the entities plotly decodes)
in plotly labels and hover text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from infraprof import __version__
from infraprof.ranking import Report
from infraprof.render.evidence import evidence_lines
from infraprof.render.host_sections import host_profile_lines, phase_lines
from infraprof.render.html_parts import (
    CAUSE_COLORS,
    PAGE_CSS,
    esc,
    html_table,
    kernel_figure,
    ncu_figures,
    ptext,
    python_tables,
)
from infraprof.render.stacks import collapsed_counts
from infraprof.units import fmt_bytes, fmt_ns, fmt_pct, fmt_rate

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


def _merge(starts: np.ndarray, ends: np.ndarray, max_bars: int
           ) -> tuple[list[tuple[int, int, int, int]], int]:
    """At most ``max_bars`` runs of operations (sorted by start): the ``max_bars - 1`` widest
    idle gaps between operations separate runs, smaller gaps are merged away. Returns
    (start, end, first index, count) per run and the widest gap merged away (ns)."""
    reach = np.maximum.accumulate(ends)
    idle = starts[1:] - reach[:-1]
    if len(idle) < max_bars:
        cuts = np.arange(len(idle))
    else:
        cuts = np.sort(np.argpartition(-idle, max_bars - 2)[: max_bars - 1])
    merged = np.ones(len(idle), dtype=bool)
    merged[cuts] = False
    widest = int(idle[merged].max()) if merged.any() else 0
    bounds = [0, *(int(c) + 1 for c in cuts), len(starts)]
    runs = [(int(starts[a]), int(reach[b - 1]), a, b - a) for a, b in itertools.pairwise(bounds)]
    return runs, max(0, widest)


def _op_bars(report: Report, max_ops: int, notes: list[str]) -> tuple[dict[str, _Bars], list[str]]:
    ops = report.trace.gpu_ops()
    origin = report.span_start_ns
    bars: dict[str, _Bars] = {}
    rows: list[str] = []
    for (device, stream), g in ops.groupby(["device_id", "stream_id"], sort=True):
        row = f"GPU {device} · stream {stream}"
        rows.append(row)
        s = g["start_ns"].to_numpy(dtype=np.int64)
        e = g["end_ns"].to_numpy(dtype=np.int64)
        kinds, names = g["kind"].tolist(), g["name"].tolist()
        if len(g) <= max_ops:
            for i in range(len(g)):
                bars.setdefault(kinds[i], _Bars()).add(
                    row, int(s[i]), int(e[i]), origin,
                    f"<b>{ptext(names[i])}</b><br>{kinds[i]} · {fmt_ns(int(e[i] - s[i]))}<br>"
                    f"at {fmt_ns(int(s[i]) - origin)}")
            continue
        runs, widest = _merge(s, e, max_ops)
        notes.append(f"{row}: {len(g)} operations drawn as {len(runs)} bars (operations at "
                     f"most {fmt_ns(widest)} apart merged into one bar).")
        for start, end, first, count in runs:
            kind = kinds[first] if count == 1 else "merged"
            label = ptext(names[first]) + (f" and {count - 1} more" if count > 1 else "")
            bars.setdefault(kind, _Bars()).add(
                row, start, end, origin,
                f"<b>{label}</b><br>{count} op(s) within {fmt_ns(end - start)}<br>"
                f"at {fmt_ns(start - origin)}")
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
        lines.append(f"thread {g.global_tid & 0xFFFFFF} "
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
    a = report.analysis
    bars: dict[str, _Bars] = {}
    if a is None:
        return bars
    origin = report.span_start_ns
    atts = a.attributions
    if len(atts) > max_gaps:
        kept = sorted(atts, key=lambda g: -g.dur_ns)[:max_gaps]
        total = sum(g.dur_ns for g in atts)
        share = sum(g.dur_ns for g in kept) / total if total else 1.0
        notes.append(f"Idle gaps: the {max_gaps} longest of {len(atts)} are drawn "
                     f"({fmt_pct(share)} of the attributed idle time).")
        atts = sorted(kept, key=lambda g: g.start_ns)
    for g in atts:
        bars.setdefault(g.category, _Bars()).add(f"GPU {g.device_id} · idle", g.start_ns,
                                                 g.end_ns, origin, _gap_hover(report, g))
    if not a.attributions:
        for tl in a.timelines:
            for s, e in zip(tl.gaps.starts.tolist()[:max_gaps], tl.gaps.ends.tolist()[:max_gaps],
                            strict=True):
                bars.setdefault("unattributed", _Bars()).add(
                    f"GPU {tl.device_id} · idle", s, e, origin, f"GPU idle {fmt_ns(e - s)}")
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


def _header(report: Report) -> str:
    m = report.trace.meta
    name = m.source.replace("\\", "/").rsplit("/", 1)[-1]
    bits = [f"nsys {m.nsys_version or '?'}", f"export schema {m.schema_version or '?'}",
            f"span {fmt_ns(report.span_ns)}", f"infraprof {__version__}"]
    out = [f"<h1>infraprof report: {esc(name)}</h1>", f"<p class='meta'>{esc(' · '.join(bits))}"
           f"<br>source: {esc(m.source)}</p>"]
    if m.capture_command:
        out.append(f"<p class='meta'>command: <code>{esc(m.capture_command)}</code></p>")
    used = report.trace.used_gpus()
    if len(used):
        span = sum(d.span_ns for d in report.devices)
        names = ", ".join(f"[{d}] {n}" for d, n in zip(used["device_id"], used["name"],
                                                           strict=True))
        out.append(f"<p>GPUs used: {esc(names)} (node has {len(report.trace.gpus)}) · "
                   f"<b>GPU busy {fmt_pct(report.gpu_busy_ns / span if span else 0)}</b> of "
                   f"the active span ({fmt_ns(report.gpu_busy_ns)} of {fmt_ns(span)})</p>")
    else:
        out.append("<p>No GPU activity (kernels, copies, memsets) in this trace.</p>")
    return "\n".join(out)


def _findings(report: Report, top: int) -> str:
    if not report.findings:
        return "<h2>Ranked findings</h2><p>No findings.</p>"
    rows = [[str(i), fmt_ns(f.impact_ns), fmt_pct(f.share), f.severity, f.category, f.title]
            for i, f in enumerate(report.findings[:top], 1)]
    out = ["<h2>Ranked findings</h2><p class='meta'>impact = estimated recoverable GPU time</p>",
           html_table(["#", "impact", "share", "severity", "category", "title"], "rrrlll", rows)]
    for i, f in enumerate(report.findings[:top], 1):
        lines = "".join(f"<li>{esc(x)}</li>" for x in evidence_lines(f))
        fix = f"<p><b>Fix:</b> {esc(f.recommendation)}</p>" if f.recommendation else ""
        out.append(f"<details><summary>#{i} {esc(f.id)} · {esc(f.severity)} · recoverable "
                   f"{fmt_ns(f.impact_ns)}</summary><p>{esc(f.title)}</p><ul>{lines}</ul>"
                   f"{fix}</details>")
    return "\n".join(out)


def _lines(title: str, lines: list[str]) -> str:
    """A titled bullet list (empty without lines)."""
    if not lines:
        return ""
    return f"<h2>{esc(title)}</h2><ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>"


def _tables(report: Report, top: int) -> str:
    out = []
    if report.devices:
        out.append("<h2>GPU busy / idle</h2>" + html_table(
            ["device", "span", "busy", "busy %", "idle", "kernels", "memcpy", "ops"], "lrrrrrrr",
            [[f"[{d.device_id}] {d.name}", fmt_ns(d.span_ns), fmt_ns(d.busy_ns),
              fmt_pct(d.busy_ns / d.span_ns if d.span_ns else 0), fmt_ns(d.idle_ns),
              fmt_ns(d.kernel_ns), fmt_ns(d.memcpy_ns), str(d.ops)] for d in report.devices]))
    k = report.kernels
    if not k.empty:
        out.append(f"<h2>Top kernels ({min(top, len(k))} of {len(k)})</h2>" + html_table(
            ["total", "count", "avg", "median", "min", "max", "name"], "rrrrrrl",
            [[fmt_ns(r.total_ns), str(r.count), fmt_ns(r.avg_ns), fmt_ns(r.median_ns),
              fmt_ns(r.min_ns), fmt_ns(r.max_ns), str(r.name)] for r in k.head(top).itertuples()]))
    a = report.api_calls
    if not a.empty:
        out.append(f"<h2>CUDA API calls ({min(top, len(a))} of {len(a)})</h2>" + html_table(
            ["total", "calls", "avg", "median", "max", "name"], "rrrrrl",
            [[fmt_ns(r.total_ns), str(r.count), fmt_ns(r.avg_ns), fmt_ns(r.median_ns),
              fmt_ns(r.max_ns), str(r.name)] for r in a.head(top).itertuples()]))
    m = report.memcpy
    if not m.empty:
        out.append("<h2>GPU memory operations</h2>" + html_table(
            ["operation", "count", "total time", "bytes", "avg size", "achieved"], "lrrrrr",
            [[str(r["operation"]), str(r["count"]), fmt_ns(r["total_ns"]), fmt_bytes(r["bytes"]),
              fmt_bytes(r["avg_bytes"]), fmt_rate(r["throughput_bytes_per_s"])]
             for r in m.to_dict("records")]))
    n = report.nvtx
    if not n.empty:
        out.append(f"<h2>NVTX ranges ({min(top, len(n))} of {len(n)})</h2>" + html_table(
            ["total", "count", "median", "p90", "p99", "domain", "name"], "rrrrrll",
            [[fmt_ns(r.total_ns), str(r.count), fmt_ns(r.median_ns), fmt_ns(r.p90_ns),
              fmt_ns(r.p99_ns), str(r.domain or "-"), str(r.name)]
             for r in n.head(top).itertuples()]))
    return "\n".join(out)


def _idle_stacks(report: Report, top: int) -> str:
    counts = collapsed_counts(report, idle_only=True)
    if not counts:
        return ""
    total = sum(counts.values())
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows = [[str(n), fmt_pct(n / total), " ← ".join(reversed(k.split(";")[-6:]))]
            for k, n in best]
    return ("<h2>Host CPU stacks during GPU idle (nsys sampling)</h2>"
            f"<p class='meta'>{total} samples taken while a GPU was idle; leaf first, last six "
            "frames. All stacks: <code>infraprof export --to speedscope --idle-only</code></p>"
            + html_table(["samples", "share", "stack (leaf ← root)"], "rrl", rows))


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
        *[(f"ip-ncu-{i}", title, f) for i, (title, f) in enumerate(ncu_figures(report))],
    ]
    profile = _lines("Host CPU profile", host_profile_lines(report, top))
    cpu_only = not report.trace.has_gpu_activity
    body: list[str] = [_header(report), *([profile] if cpu_only else []),
                       _findings(report, top),
                       _lines("Phases (start-up and teardown costs are one-time)",
                              phase_lines(report, top))]
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
    body += [_idle_stacks(report, top), python_tables(report, top),
             *([] if cpu_only else [profile]), _tables(report, top)]
    title = esc("infraprof report: " + report.trace.meta.source.replace("\\", "/")
                .rsplit("/", 1)[-1])
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<meta name='generator' content='infraprof {__version__}'>\n"
            f"<title>{title}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(b for b in body if b) + "\n</body>\n</html>\n")


__all__: Sequence[str] = ("esc", "render_html", "timeline_figure")
