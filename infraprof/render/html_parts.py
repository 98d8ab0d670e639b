"""Building blocks of the HTML report: escaping, style, and the smaller figures (kernel
breakdown, ncu warp stalls and roofline)."""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go

from infraprof.ranking import Report
from infraprof.text_safety import printable
from infraprof.units import fmt_ns

CAUSE_COLORS = {
    "sync": "#d62728", "memcpy": "#ff7f0e", "allocation": "#8c564b",
    "launch-overhead": "#9467bd", "host-cpu": "#e377c2", "host-wait": "#bcbd22",
    "dependency": "#17becf", "unknown": "#7f7f7f",
}
PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;
border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#59636e;font-size:.9em}.note{background:#fff8c5;padding:4px 8px;font-size:.9em}
table{border-collapse:collapse;font-size:.9em;width:100%}
th,td{border:1px solid #d0d7de;padding:3px 8px;vertical-align:top}
th{background:#f6f8fa}td.r{text-align:right;white-space:nowrap}
td.l{word-break:break-word}details{margin:6px 0}summary{cursor:pointer;font-weight:600}
code{background:#f6f8fa;padding:1px 4px}
"""


def esc(value: object) -> str:
    """HTML-escaped text (quotes too), for the page; control characters shown escaped."""
    return html.escape(printable(value), quote=True)


def ptext(value: object) -> str:
    """Text for plotly labels and hover: plotly reads ``<...>`` as markup and decodes only a few
    entities (``&lt; &gt; &amp;``, not ``&quot;``), so escape exactly ``& < >`` (and show
    control characters escaped)."""
    return html.escape(printable(value), quote=False)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def kernel_figure(report: Report, top: int = 15) -> go.Figure | None:
    """Top kernels by total GPU time (the rest summed as "other kernels")."""
    k = report.kernels
    if k.empty:
        return None
    head = k.head(top)
    labels = [ptext(_short(str(n))) for n in head["name"]]
    values = [float(v) / 1e6 for v in head["total_ns"]]
    hover = [f"<b>{ptext(r.name)}</b><br>total {fmt_ns(r.total_ns)} · {r.count} launches<br>"
             f"avg {fmt_ns(r.avg_ns)} · median {fmt_ns(r.median_ns)}" for r in head.itertuples()]
    rest = k.iloc[top:]
    if len(rest):
        labels.append(f"other kernels ({len(rest)})")
        values.append(float(rest["total_ns"].sum()) / 1e6)
        hover.append(f"{len(rest)} other kernels: {fmt_ns(int(rest['total_ns'].sum()))}")
    # Labels may repeat after shortening; index them so plotly keeps one bar each.
    ys = [f"{i + 1}. {lab}" for i, lab in enumerate(labels)]
    fig = go.Figure(go.Bar(y=ys[::-1], x=values[::-1], orientation="h",
                           marker={"color": "#4c78a8"}, hovertext=hover[::-1],
                           hoverinfo="text"))
    fig.update_layout(template="plotly_white", height=140 + 26 * len(ys),
                      margin={"l": 10, "r": 10, "t": 20, "b": 40},
                      xaxis={"title": {"text": "GPU time (ms)"}}, yaxis={"automargin": True})
    return fig


def kernel_class_figure(report: Report) -> go.Figure | None:
    """One stacked bar per device: kernel time (sum of durations) per kernel class."""
    per_device = report.analysis.kernel_classes if report.analysis else []
    if not per_device:
        return None
    devices = [f"GPU {d['device_id']}" for d in per_device]
    classes = list(dict.fromkeys(c["class"] for d in per_device for c in d["classes"]))
    fig = go.Figure()
    for cls in classes:
        ns = [next((c["total_ns"] for c in d["classes"] if c["class"] == cls), 0)
              for d in per_device]
        fig.add_trace(go.Bar(y=devices, x=[v / 1e6 for v in ns], orientation="h", name=cls,
                             hovertext=[f"{cls}: {fmt_ns(v)}" for v in ns], hoverinfo="text"))
    fig.update_layout(barmode="stack", template="plotly_white", height=160 + 40 * len(devices),
                      margin={"l": 10, "r": 10, "t": 20, "b": 40},
                      xaxis={"title": {"text": "GPU kernel time (ms)"}}, yaxis={"automargin": True})
    return fig


def _kernel_findings(report: Report) -> list[tuple[str, dict[str, Any]]]:
    return [(str(f.evidence.get("nsys_kernel") or f.title), f.evidence) for f in report.findings
            if f.category == "kernel" and ("stalls" in f.evidence or "roofline" in f.evidence)]


def _stall_figure(items: list[tuple[str, dict[str, Any]]]) -> go.Figure | None:
    rows = [(n, ev["stalls"]) for n, ev in items if ev.get("stalls")][:12]
    if not rows:
        return None
    reasons = sorted({s["reason"] for _, st in rows for s in st})
    ys = [f"{i + 1}. {ptext(_short(n, 50))}" for i, (n, _) in enumerate(rows)]
    fig = go.Figure()
    for reason in reasons:
        xs = [next((100 * s["share"] for s in st if s["reason"] == reason), 0.0) for _, st in rows]
        fig.add_trace(go.Bar(y=ys, x=xs, name=ptext(reason), orientation="h",
                             hovertemplate=f"{ptext(reason)}: %{{x:.1f}} %<extra></extra>"))
    fig.update_layout(barmode="stack", template="plotly_white", height=160 + 30 * len(ys),
                      margin={"l": 10, "r": 10, "t": 20, "b": 40}, yaxis={"automargin": True,
                                                                         "autorange": "reversed"},
                      xaxis={"title": {"text": "share of warp cycles per issued instruction (%)"}})
    return fig


def _roofline_figure(items: list[tuple[str, dict[str, Any]]]) -> go.Figure | None:
    pts = [(n, ev["roofline"]) for n, ev in items if ev.get("roofline")]
    pts = [(n, r) for n, r in pts if r.get("arithmetic_intensity") and r.get("achieved_flop_per_s")]
    if not pts:
        return None
    fig = go.Figure()
    for prec in sorted({r["precision"] for _, r in pts}):
        sel = [(n, r) for n, r in pts if r["precision"] == prec]
        fig.add_trace(go.Scatter(
            x=[r["arithmetic_intensity"] for _, r in sel],
            y=[r["achieved_flop_per_s"] / 1e9 for _, r in sel], mode="markers",
            name=ptext(f"kernels ({prec})"), marker={"size": 10},
            hovertext=[f"<b>{ptext(n)}</b><br>{r['arithmetic_intensity']:.3g} FLOP/B, "
                       f"{r['achieved_flop_per_s'] / 1e9:.3g} GFLOP/s ({ptext(r['side'])} side)"
                       for n, r in sel], hoverinfo="text"))
        roof = _roof(sel[0][1])
        if roof:
            fig.add_trace(go.Scatter(x=roof[0], y=roof[1], mode="lines", name=f"roof ({prec})",
                                     line={"dash": "dash"}, hoverinfo="skip"))
    fig.update_layout(template="plotly_white", height=420, xaxis={
        "type": "log", "title": {"text": "arithmetic intensity (FLOP/byte)"}}, yaxis={
        "type": "log", "title": {"text": "GFLOP/s"}}, margin={"l": 10, "r": 10, "t": 20, "b": 40})
    return fig


def _roof(r: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """The roof through the ridge point, rebuilt from one kernel's placement."""
    pct, ai, ridge = r.get("pct_of_roof"), r["arithmetic_intensity"], r.get("ridge_point")
    if not pct or not ridge or not math.isfinite(pct) or pct <= 0:
        return None
    at_ai = r["achieved_flop_per_s"] / (pct / 100)
    peak = at_ai if ai >= ridge else at_ai * ridge / ai
    lo, hi = min(ai, ridge) / 10, max(ai, ridge) * 10
    return [lo, ridge, hi], [peak * lo / ridge / 1e9, peak / 1e9, peak / 1e9]


def ncu_figures(report: Report) -> list[tuple[str, go.Figure]]:
    """Warp-stall bars and roofline scatter from ncu kernel findings (empty without ncu)."""
    items = _kernel_findings(report)
    out = []
    stalls = _stall_figure(items)
    if stalls is not None:
        out.append(("Warp stalls of the profiled kernels (ncu)", stalls))
    roof = _roofline_figure(items)
    if roof is not None:
        out.append(("Roofline of the profiled kernels (ncu)", roof))
    return out
