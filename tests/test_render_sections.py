"""The sections model: terminal, Markdown and HTML show the same sections (titles, order, row
counts) as :func:`report_sections` builds; each format formats a cell by its column's kind in
one function; the one collapsed-stack writer."""

from __future__ import annotations

import bisect
import html
import re
from collections import Counter

import numpy as np
import pytest
from helpers_reports import DEMO, MINIWEATHER, report_for
from helpers_traces import TraceFiles, ro_connect

from infraprof.collapsed import collapsed_frame, write_collapsed
from infraprof.ranking import Report
from infraprof.ranking.sections import Cell, Column, column, format_cell, report_sections
from infraprof.render import html as html_render
from infraprof.render import markdown, terminal
from infraprof.units import fmt_ns

TOP = 10
FIGURES = {"GPU timeline (idle gaps coloured by attributed cause)", "GPU idle by cause",
           "Kernel time breakdown", "Kernel time per class"}


def _terminal_sections(text: str, titles: list[str]) -> list[tuple[str, int]]:
    lines = text.splitlines()
    out, at = [], 0
    for title in titles:
        at = next(i for i in range(at, len(lines)) if lines[i].strip() == title)
        rows = 0
        if at + 3 < len(lines) and not lines[at + 1].strip() and "─" in lines[at + 3]:
            end = at + 4
            while end < len(lines) and lines[end].strip():
                end += 1
            rows = end - at - 4
        out.append((title, rows))
    return out


def _unmd(text: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def _markdown_sections(text: str) -> list[tuple[str, int]]:
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("### ") or line == "### Evidence":
            continue
        end = i + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        out.append((_unmd(line[4:]), max(0, end - i - 4)))
    return out


def _html_sections(page: str) -> list[tuple[str, int]]:
    out = []
    for m in re.finditer(r"<h2>(.*?)</h2>\n(<table>.*?</table>)?", page, re.S):
        title = html.unescape(m.group(1))
        if title not in FIGURES:
            out.append((title, (m.group(2) or "").count("<tr>") - (1 if m.group(2) else 0)))
    return out


def _check_formats(report: Report) -> None:
    sections = report_sections(report, TOP)
    expected = [(s.title, len(s.rows)) for s in sections]
    assert expected[0][0].startswith("Ranked findings") and all(n <= TOP for _, n in expected)
    text = terminal.render_terminal(report, width=250, top=TOP)
    assert _terminal_sections(text, [t for t, _ in expected]) == expected
    assert _markdown_sections(markdown.render_markdown(report, top=TOP)) == expected
    assert _html_sections(html_render.render_html(report, top=TOP)) == expected


def test_sample_trace_same_sections_in_every_format() -> None:
    report = report_for(DEMO)
    keys = [s.key for s in report_sections(report, TOP)]
    assert keys[:5] == ["findings", "devices", "kernels", "kernel_classes", "api"]
    assert "nvtx" in keys
    _check_formats(report)


@pytest.mark.realtraces
def test_real_trace_same_sections_in_every_format(trace_files: TraceFiles) -> None:
    report = report_for(trace_files.path(MINIWEATHER))
    sections = {s.key: s for s in report_sections(report, TOP)}
    assert len(sections["kernels"].rows) == min(TOP, len(report.kernels))
    assert len(sections["api"].rows) == min(TOP, len(report.api_calls))
    _check_formats(report)


def _idle_stack_counts(report: Report) -> list[int]:
    """Oracle: samples per distinct (thread, root-first symbols) among the CPU samples that
    fall in a GPU idle gap, by bisecting each device's gap list."""
    assert report.analysis is not None
    gaps = [(s, e) for tl in report.analysis.timelines
            for s, e in zip(tl.gaps.starts.tolist(), tl.gaps.ends.tolist(), strict=True)]
    starts = [s for s, _ in gaps]
    frames = report.trace.callchains
    chains: dict[int, dict[int, str]] = {}
    for cid, depth, symbol, module in frames[frames["source"] == "sampling"][
            ["callchain_id", "depth", "symbol", "module"]].itertuples(index=False):
        chains.setdefault(int(cid), {})[int(depth)] = str(symbol if symbol is not None
                                                          else module)
    counts: Counter[tuple[int, tuple[str, ...]]] = Counter()
    for t, tid, cid in report.trace.cpu_samples[["start_ns", "tid", "callchain_id"]].itertuples(
            index=False):
        i = bisect.bisect_right(starts, int(t)) - 1
        if i >= 0 and int(t) < gaps[i][1] and int(cid) in chains:
            chain = chains[int(cid)]
            counts[(int(tid), tuple(chain[d] for d in sorted(chain, reverse=True)))] += 1
    return sorted(counts.values(), reverse=True)


@pytest.mark.realtraces
def test_idle_stacks_match_an_independent_count(trace_files: TraceFiles) -> None:
    report = report_for(trace_files.path(MINIWEATHER))
    assert report.analysis is not None and len(report.analysis.timelines) == 1
    (section,) = [s for s in report_sections(report, TOP) if s.key == "idle_stacks"]
    oracle = _idle_stack_counts(report)
    assert section.notes[0].startswith(f"{sum(oracle)} samples taken while a GPU was idle")
    assert [row[0] for row in section.rows] == oracle[:TOP]
    assert section.rows[0][1] == pytest.approx(oracle[0] / sum(oracle))


CELLS: list[tuple[Cell, Column, str]] = [
    (1_234_567, column("t", "ns"), "1.235 ms"),
    (1_500_000.0, column("b", "bytes"), "1.50 MB"),
    (0.25, column("s", "pct"), "25.0 %"),
    (2.5e9, column("r", "rate"), "2.50 GB/s"),
    (3.0, column("n", "int"), "3"),
    (None, column("t", "ns"), "-"),
    ("a|<b>_", column("name"), "a|<b>_"),
]


def test_format_cell_by_kind() -> None:
    for value, col, text in CELLS:
        assert format_cell(value, col.kind) == text
    assert column("n", "int").align == "right" and column("name").align == "left"


def test_terminal_cell() -> None:
    for value, col, text in CELLS:
        assert terminal.cell(value, col).plain == text
    assert terminal.cell("x" * 30, column("name", max_chars=10)).plain == "x" * 9 + "…"


def test_markdown_cell() -> None:
    for value, col, text in CELLS:
        assert markdown.cell(value, col) == markdown.md_text(text)
    assert markdown.cell("a|<b>_", column("name")) == r"a\|&lt;b&gt;\_"


def test_html_cell() -> None:
    for value, col, text in CELLS:
        expected = f"<td class='{col.align[0]}'>{html.escape(text)}</td>"
        assert html_render.cell(value, col) == expected
    assert html_render.cell(0.5, column("s", "pct")) == "<td class='r'>50.0 %</td>"


def test_write_collapsed_sums_cleans_and_sorts() -> None:
    text = write_collapsed([(["t (1)", "main", "b;c"], 2), (["t (1)", "main"], 1),
                            (["t (1)", "main", "b:c"], 3), (["t (1)", " a\n  b ", ""], 1)])
    assert text == "t (1);a b;? 1\nt (1);main 1\nt (1);main;b:c 5\n"
    assert write_collapsed([]) == ""
    assert collapsed_frame("x;\ty") == "x: y"


@pytest.mark.realtraces
def test_launch_section_matches_the_oracle_checked_table_and_sql(
        trace_files: TraceFiles) -> None:
    """Rows: the per-kernel launch table that test_oracle_timeline checks against nsys
    ``kernexecsum``; the note's percentiles: numpy over a SQL join of kernels to their calls."""
    path = trace_files.path(MINIWEATHER)
    report = report_for(path)
    (section,) = [s for s in report_sections(report, TOP) if s.key == "launch"]
    per_kernel = report.to_dict()["launch"]["per_kernel"][:TOP]
    assert [(r[0], round(float(r[1] or 0)), round(float(r[2] or 0)),
             None if r[3] is None else round(float(r[3])), r[4]) for r in section.rows] == [
        (k["count"], k["kernel_avg_ns"], k["api_avg_ns"], k["queue_avg_ns"], k["name"])
        for k in per_kernel]
    with ro_connect(path) as conn:
        rows = conn.execute(
            "SELECT k.start - r.start, r.end - r.start FROM CUPTI_ACTIVITY_KIND_KERNEL k "
            "JOIN CUPTI_ACTIVITY_KIND_RUNTIME r ON k.correlationId = r.correlationId "
            "AND (k.globalPid >> 24) = (r.globalTid >> 24)").fetchall()
    latency = np.array([r[0] for r in rows], dtype=np.float64)
    call = np.array([r[1] for r in rows], dtype=np.float64)
    want = (f"P50 {fmt_ns(round(float(np.percentile(latency, 50))))}, "
            f"P99 {fmt_ns(round(float(np.percentile(latency, 99))))}; launch call P50 "
            f"{fmt_ns(round(float(np.percentile(call, 50))))}, "
            f"P99 {fmt_ns(round(float(np.percentile(call, 99))))}")
    assert want in section.notes[0]


def test_copies_section_matches_sql() -> None:
    """Bandwidth of copies of at least 1 MB per direction, from the MEMCPY table."""
    (section,) = [s for s in report_sections(report_for(DEMO), TOP) if s.key == "copies"]
    with ro_connect(DEMO) as conn:
        rows = conn.execute(
            "SELECT copyKind, count(*), sum(bytes), sum(\"end\" - start) FROM "
            "CUPTI_ACTIVITY_KIND_MEMCPY WHERE bytes >= 1000000 GROUP BY copyKind").fetchall()
    names = {1: "HtoD", 2: "DtoH", 8: "DtoD"}
    want = sorted((names[kind], n, size, size / (dur / 1e9)) for kind, n, size, dur in rows)
    got = sorted((r[0], r[1], r[2], r[3]) for r in section.rows)
    assert [g[:3] for g in got] == [w[:3] for w in want] and want
    assert all(g[3] == pytest.approx(w[3], rel=1e-6) for g, w in zip(got, want, strict=True))
