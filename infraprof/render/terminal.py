"""Terminal report (rich): header, ranked findings, GPU busy, kernels, API, memory, NVTX.

Every name from the trace is passed as a ``rich.text.Text`` so markup-like characters
(``[CUDA memcpy HtoD]``, ``<``) print literally.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infraprof.ranking import Report
from infraprof.render.evidence import evidence_lines
from infraprof.render.host_sections import (
    host_profile_lines,
    iterations,
    per_iteration,
    phase_lines,
    steady_findings,
)
from infraprof.units import fmt_bytes, fmt_ns, fmt_pct, fmt_rate

file_extension = ".txt"


def _table(title: str, columns: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    for name, justify in columns:
        wide = name in ("name", "title")
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         overflow="ellipsis" if wide else "fold", no_wrap=True,
                         ratio=1 if wide else None, min_width=12 if wide else None)
    return table


def _name(text: str | None, limit: int = 90) -> Text:
    value = text or "-"
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return Text(value)


def _header(report: Report, console: Console) -> None:
    m = report.trace.meta
    console.print(Text("infraprof analyze: ", style="bold") + Text(m.source))
    bits = [f"nsys {m.nsys_version or '?'}", f"export schema {m.schema_version or '?'}",
            f"span {fmt_ns(report.span_ns)}"]
    console.print(Text(" · ".join(bits)))
    if m.capture_command:
        console.print(Text("command: ") + Text(m.capture_command))
    used = report.trace.used_gpus()
    if len(used):
        names = ", ".join(f"[{d}] {n}" for d, n in zip(used["device_id"], used["name"],
                                                           strict=True))
        console.print(Text(f"GPUs used: {names} (node has {len(report.trace.gpus)})"))
    elif len(report.trace.gpus):
        console.print(Text(f"GPUs: {len(report.trace.gpus)} in node, no GPU activity recorded"))
    else:
        console.print(Text("GPUs: no GPU activity recorded (CPU-only capture)"))


def _findings(report: Report, console: Console, top: int) -> None:
    if not report.findings:
        return
    n = iterations(report)
    per = [("per iter", "right")] if n else []
    t = _table("Ranked findings (impact = estimated recoverable GPU time" + (
        f"; per iteration × {n} steady-state iterations)" if n else ")"), [
        ("#", "right"), ("impact", "right"), *per, ("share", "right"), ("category", "left"),
        ("title", "left")])
    for i, f in enumerate(steady_findings(report)[:top], 1):
        cells = [per_iteration(report, f)] if n else []
        t.add_row(str(i), fmt_ns(f.impact_ns), *cells, fmt_pct(f.share), f.category,
                  Text(f.title))
    console.print(t)


def _lines(title: str, lines: list[str], console: Console) -> None:
    if lines:
        console.print(Text("\n" + title, style="bold"))
        for line in lines:
            console.print(Text("   " + line))


def _evidence(report: Report, console: Console, n: int = 3) -> None:
    shown = [f for f in report.findings if f.impact_ns > 0][:n]
    for i, f in enumerate(shown, 1):
        console.print(Text(f"\n#{i} {f.id} · {f.severity} · recoverable {fmt_ns(f.impact_ns)}",
                           style="bold"))
        lines = evidence_lines(f)[:12]
        for line in lines:
            console.print(Text("   " + line))
        console.print(Text("   → " + f.recommendation, style="italic"))


def _breakdown(report: Report, console: Console) -> None:
    a = report.analysis
    if a is None or not a.timelines:
        return
    total = sum(a.idle_breakdown_ns.values())
    if total <= 0:
        return
    parts = [f"{k} {fmt_pct(v / total)}" for k, v in sorted(
        a.idle_breakdown_ns.items(), key=lambda kv: -kv[1]) if v > 0]
    console.print(Text(f"GPU idle by cause ({fmt_ns(total)} in {a.gaps_attributed} gaps): "
                       + ", ".join(parts)))


def _python(report: Report, console: Console, top: int) -> None:
    py = report.analysis.python if report.analysis else None
    if py is None:
        return
    console.print(Text("\nPython (py-spy)", style="bold"))
    if py.alignment_error_ns is not None:
        console.print(Text(f"   alignment error to the nsys timeline: "
                           f"{fmt_ns(py.alignment_error_ns)}"))
    for note in py.notes:
        console.print(Text("   note: " + note))
    for r in py.ranges[:top]:
        frames = ", ".join(f"{f['frame']} {fmt_pct(f['share'])}" for f in r["frames"][:3])
        console.print(Text(f"   NVTX {r['name']}: {frames or r['refused'] or '-'}"))
    if not py.ranges:
        for f in py.aggregate[:5]:
            console.print(Text(f"   {fmt_pct(f['share'])}  {f['frame']}"))


def _devices(report: Report, console: Console) -> None:
    if not report.devices:
        return
    t = _table("GPU busy / idle (over each device's active span)", [
        ("device", "left"), ("span", "right"), ("busy", "right"), ("busy %", "right"),
        ("idle", "right"), ("kernels", "right"), ("memcpy", "right"), ("ops", "right")])
    for d in report.devices:
        share = d.busy_ns / d.span_ns if d.span_ns else 0.0
        t.add_row(Text(f"[{d.device_id}] {d.name}"), fmt_ns(d.span_ns), fmt_ns(d.busy_ns),
                  fmt_pct(share), fmt_ns(d.idle_ns), fmt_ns(d.kernel_ns), fmt_ns(d.memcpy_ns),
                  str(d.ops))
    console.print(t)


def _kernels(report: Report, console: Console, top: int) -> None:
    k = report.kernels
    if k.empty:
        return
    total = float(k["total_ns"].sum())
    t = _table(f"Top kernels by GPU time ({min(top, len(k))} of {len(k)})", [
        ("time %", "right"), ("total", "right"), ("count", "right"), ("avg", "right"),
        ("median", "right"), ("min", "right"), ("max", "right"), ("name", "left")])
    for r in k.head(top).itertuples():
        t.add_row(fmt_pct(r.total_ns / total if total else 0), fmt_ns(r.total_ns), str(r.count),
                  fmt_ns(r.avg_ns), fmt_ns(r.median_ns), fmt_ns(r.min_ns), fmt_ns(r.max_ns),
                  _name(str(r.short_name if len(str(r.name)) > 90 else r.name)))
    console.print(t)


def _api(report: Report, console: Console, top: int) -> None:
    a = report.api_calls
    if a.empty:
        return
    total = float(a["total_ns"].sum())
    t = _table(f"CUDA API calls ({min(top, len(a))} of {len(a)})", [
        ("time %", "right"), ("total", "right"), ("calls", "right"), ("avg", "right"),
        ("median", "right"), ("max", "right"), ("name", "left")])
    for r in a.head(top).itertuples():
        t.add_row(fmt_pct(r.total_ns / total if total else 0), fmt_ns(r.total_ns), str(r.count),
                  fmt_ns(r.avg_ns), fmt_ns(r.median_ns), fmt_ns(r.max_ns), _name(str(r.name)))
    console.print(t)


def _memory(report: Report, console: Console) -> None:
    m = report.memcpy
    if m.empty:
        return
    t = _table("GPU memory operations", [
        ("operation", "left"), ("count", "right"), ("total time", "right"), ("bytes", "right"),
        ("avg size", "right"), ("achieved", "right")])
    for r in m.to_dict("records"):
        row: dict[Any, Any] = r
        t.add_row(Text(str(row["operation"])), str(row["count"]), fmt_ns(row["total_ns"]),
                  fmt_bytes(row["bytes"]), fmt_bytes(row["avg_bytes"]),
                  fmt_rate(row["throughput_bytes_per_s"]))
    console.print(t)


def _nvtx(report: Report, console: Console, top: int) -> None:
    n = report.nvtx
    if n.empty:
        return
    t = _table(f"NVTX ranges ({min(top, len(n))} of {len(n)})", [
        ("total", "right"), ("count", "right"), ("median", "right"), ("p90", "right"),
        ("p99", "right"), ("max", "right"), ("domain", "left"), ("name", "left")])
    for r in n.head(top).itertuples():
        t.add_row(fmt_ns(r.total_ns), str(r.count), fmt_ns(r.median_ns), fmt_ns(r.p90_ns),
                  fmt_ns(r.p99_ns), fmt_ns(r.max_ns), _name(str(r.domain) or "-", 20),
                  _name(str(r.name), 60))
    console.print(t)


def render_terminal(report: Report, width: int = 120, color: bool = False, top: int = 10) -> str:
    """The report as text for a terminal ``width`` columns wide (ANSI colours if ``color``)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                      color_system="auto" if color else None, highlight=False, soft_wrap=False)
    _header(report, console)
    profile = host_profile_lines(report, top)
    if not report.trace.has_gpu_activity:
        _lines("Host CPU profile", profile, console)
    _findings(report, console, top)
    _breakdown(report, console)
    _evidence(report, console)
    _lines("Phases (start-up and teardown costs are one-time)", phase_lines(report, top),
           console)
    _python(report, console, top)
    if report.trace.has_gpu_activity:
        _lines("Host CPU profile", profile, console)
    if not report.trace.has_gpu_activity:
        console.print(Text("\nNo GPU activity (kernels, copies, memsets) in this trace."))
    _devices(report, console)
    _kernels(report, console, top)
    _api(report, console, top)
    _memory(report, console)
    _nvtx(report, console, top)
    return buf.getvalue()
