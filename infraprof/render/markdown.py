"""``--format markdown``: the terminal report's content as GitHub-flavoured Markdown.

Made for pull-request comments and CI job summaries: tables, evidence in collapsible
``<details>`` blocks, and at most :data:`MAX_BYTES` (GitHub's 1 MiB job-summary limit). A
longer report is cut at a whole row or block and ends with a note saying what was left out.

Every name from the trace goes through :func:`md_text`: HTML-special characters become
entities and Markdown punctuation (``|`` included, so tables stay intact) is backslash-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from infraprof import __version__
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

file_extension = ".md"
MAX_BYTES = 1024 * 1024

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|~#+!])")
_NOTE = ("\n> **Report truncated** to stay under {limit}: {n} more lines left out. "
         "The full report: `infraprof analyze --format json` or `--format html`.\n")


def md_text(value: object) -> str:
    """``value`` as inline Markdown text that renders literally (safe inside table cells)."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def _table(title: str, header: Sequence[str], align: str, rows: list[list[str]]) -> list[str]:
    """Chunks of one table: the heading with the header rows, then one chunk per row."""
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|\n"
    return [f"\n### {title}\n\n" + _row(header) + sep, *(_row(r) for r in rows)]


def _header(report: Report) -> list[str]:
    m = report.trace.meta
    name = m.source.replace("\\", "/").rsplit("/", 1)[-1]
    out = [f"## infraprof report: {md_text(name)}\n\n"]
    bits = [f"nsys {m.nsys_version or '?'}", f"export schema {m.schema_version or '?'}",
            f"span {fmt_ns(report.span_ns)}", f"infraprof {__version__}"]
    out.append(md_text(" · ".join(bits)) + "\n\n")
    if m.capture_command:
        out.append(f"Command: {md_text(m.capture_command)}\n\n")
    used = report.trace.used_gpus()
    if len(used):
        names = ", ".join(f"[{d}] {n}" for d, n in zip(used["device_id"], used["name"],
                                                           strict=True))
        span = sum(d.span_ns for d in report.devices)
        busy = report.gpu_busy_ns
        out.append(f"GPUs used: {md_text(names)} (node has {len(report.trace.gpus)}) · "
                   f"**GPU busy {fmt_pct(busy / span if span else 0)}** of the active span "
                   f"({fmt_ns(busy)} of {fmt_ns(span)})\n")
    else:
        out.append("No GPU activity (kernels, copies, memsets) in this trace.\n")
    return out


def _findings(report: Report, top: int) -> list[str]:
    if not report.findings:
        return ["\n### Ranked findings\n\nNo findings.\n"]
    n = iterations(report)
    rows = [[str(i), fmt_ns(f.impact_ns), *([per_iteration(report, f)] if n else []),
             fmt_pct(f.share), f.severity, md_text(f.category), md_text(f.title)]
            for i, f in enumerate(steady_findings(report)[:top], 1)]
    out = _table("Ranked findings (impact = estimated recoverable GPU time" + (
        f"; per iteration × {n} steady-state iterations)" if n else ")"),
        ["#", "impact", *(["per iteration"] if n else []), "share", "severity", "category",
         "title"], "rrrrlll" if n else "rrrlll", rows)
    a = report.analysis
    total = sum(a.idle_breakdown_ns.values()) if a else 0
    if a and total > 0:
        parts = [f"{k} {fmt_pct(v / total)}" for k, v in sorted(
            a.idle_breakdown_ns.items(), key=lambda kv: -kv[1]) if v > 0]
        out.append(f"\nGPU idle by cause ({fmt_ns(total)} in {a.gaps_attributed} gaps): "
                   + md_text(", ".join(parts)) + "\n")
    return out


def _evidence(report: Report, top: int) -> list[str]:
    out = []
    shown = [f for f in report.findings[:top] if f.impact_ns > 0 or evidence_lines(f)]
    for i, f in enumerate(shown, 1):
        summary = html.escape(f"#{i} {f.id} · {f.severity} · recoverable {fmt_ns(f.impact_ns)}")
        lines = "".join(f"- {md_text(line)}\n" for line in evidence_lines(f))
        fix = f"\n**Fix:** {md_text(f.recommendation)}\n" if f.recommendation else ""
        out.append(f"\n<details><summary><b>{summary}</b></summary>\n\n{md_text(f.title)}\n\n"
                   f"{lines}{fix}\n</details>\n")
    if out:
        out.insert(0, "\n### Evidence\n")
    return out


def _devices(report: Report) -> list[str]:
    rows = [[md_text(f"[{d.device_id}] {d.name}"), fmt_ns(d.span_ns), fmt_ns(d.busy_ns),
             fmt_pct(d.busy_ns / d.span_ns if d.span_ns else 0), fmt_ns(d.idle_ns),
             fmt_ns(d.kernel_ns), fmt_ns(d.memcpy_ns), str(d.ops)] for d in report.devices]
    if not rows:
        return []
    return _table("GPU busy / idle (over each device's active span)",
                  ["device", "span", "busy", "busy %", "idle", "kernels", "memcpy", "ops"],
                  "lrrrrrrr", rows)


def _kernels(report: Report, top: int) -> list[str]:
    k = report.kernels
    if k.empty:
        return []
    total = float(k["total_ns"].sum())
    rows = [[fmt_pct(r.total_ns / total if total else 0), fmt_ns(r.total_ns), str(r.count),
             fmt_ns(r.avg_ns), fmt_ns(r.median_ns), fmt_ns(r.min_ns), fmt_ns(r.max_ns),
             md_text(r.name)] for r in k.head(top).itertuples()]
    return _table(f"Top kernels by GPU time ({len(rows)} of {len(k)})",
                  ["time %", "total", "count", "avg", "median", "min", "max", "name"],
                  "rrrrrrrl", rows)


def _api(report: Report, top: int) -> list[str]:
    a = report.api_calls
    if a.empty:
        return []
    total = float(a["total_ns"].sum())
    rows = [[fmt_pct(r.total_ns / total if total else 0), fmt_ns(r.total_ns), str(r.count),
             fmt_ns(r.avg_ns), fmt_ns(r.median_ns), fmt_ns(r.max_ns), md_text(r.name)]
            for r in a.head(top).itertuples()]
    return _table(f"CUDA API calls ({len(rows)} of {len(a)})",
                  ["time %", "total", "calls", "avg", "median", "max", "name"], "rrrrrrl", rows)


def _memory(report: Report) -> list[str]:
    m = report.memcpy
    if m.empty:
        return []
    rows = [[md_text(r["operation"]), str(r["count"]), fmt_ns(r["total_ns"]),
             fmt_bytes(r["bytes"]), fmt_bytes(r["avg_bytes"]),
             fmt_rate(r["throughput_bytes_per_s"])] for r in m.to_dict("records")]
    return _table("GPU memory operations",
                  ["operation", "count", "total time", "bytes", "avg size", "achieved"],
                  "lrrrrr", rows)


def _nvtx(report: Report, top: int) -> list[str]:
    n = report.nvtx
    if n.empty:
        return []
    rows = [[fmt_ns(r.total_ns), str(r.count), fmt_ns(r.median_ns), fmt_ns(r.p90_ns),
             fmt_ns(r.p99_ns), fmt_ns(r.max_ns), md_text(r.domain or "-"), md_text(r.name)]
            for r in n.head(top).itertuples()]
    return _table(f"NVTX ranges ({len(rows)} of {len(n)})",
                  ["total", "count", "median", "p90", "p99", "max", "domain", "name"],
                  "rrrrrrll", rows)


def _python(report: Report, top: int) -> list[str]:
    py = report.analysis.python if report.analysis else None
    if py is None:
        return []
    out = ["\n### Python (py-spy)\n\n"]
    if py.alignment_error_ns is not None:
        out.append(f"Alignment error to the nsys timeline: {fmt_ns(py.alignment_error_ns)}\n\n")
    out += [f"- note: {md_text(note)}\n" for note in py.notes]
    rows = [[md_text(f.get("frame", "?")), fmt_pct(f.get("share"))] for f in py.aggregate[:top]]
    if rows:
        out += _table("Python frames (all samples)", ["frame", "share"], "lr", rows)
    return out


def fit(chunks: Sequence[str], max_bytes: int) -> str:
    """Join ``chunks``; if that exceeds ``max_bytes`` (UTF-8), keep whole leading chunks and
    end with a note saying how many lines were left out."""
    text = "".join(chunks)
    if len(text.encode()) <= max_bytes:
        return text
    limit = f"{max_bytes / 1024:.0f} KiB" if max_bytes < 1024 * 1024 else (
        f"{max_bytes / (1024 * 1024):.0f} MiB")
    reserve = len(_NOTE.format(limit=limit, n=10**12).encode())
    kept: list[str] = []
    used = 0
    for chunk in chunks:
        size = len(chunk.encode())
        if used + size > max_bytes - reserve:
            break
        kept.append(chunk)
        used += size
    left = "".join(chunks[len(kept):]).count("\n")
    return "".join(kept) + _NOTE.format(limit=limit, n=left)


def _lines(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    return [f"\n### {title}\n\n" + "".join(f"- {md_text(line)}\n" for line in lines)]


def render_markdown(report: Report, top: int = 10, max_bytes: int = MAX_BYTES) -> str:
    """The report as GitHub-flavoured Markdown of at most ``max_bytes`` UTF-8 bytes."""
    profile = _lines("Host CPU profile", host_profile_lines(report, top))
    cpu_only = not report.trace.has_gpu_activity
    chunks = [
        *_header(report), *(profile if cpu_only else []), *_findings(report, top),
        *_evidence(report, top),
        *_lines("Phases (start-up and teardown costs are one-time)", phase_lines(report, top)),
        *_devices(report), *_kernels(report, top), *_api(report, top), *_memory(report),
        *_nvtx(report, top), *_python(report, top), *([] if cpu_only else profile),
    ]
    return fit(chunks, max_bytes)
