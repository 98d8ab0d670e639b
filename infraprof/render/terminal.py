"""Terminal report (rich): the header, then the sections of
:func:`~infraprof.ranking.sections.report_sections` as tables, with the evidence of the top
findings after the findings table.

Every cell goes through :func:`_cell` and every name from the trace is passed as a
``rich.text.Text``, so markup-like characters (``[CUDA memcpy HtoD]``, ``<``) print literally.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

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
from infraprof.render.evidence import evidence_lines
from infraprof.text_safety import printable
from infraprof.units import fmt_ns

file_extension = ".txt"


def _safe(value: object, style: str = "") -> Text:
    """Text for the terminal: names from the trace print literally (rich markup is not
    parsed) and control characters (ANSI/OSC escapes, NUL, newlines) are shown escaped. Line
    breaks that the layout itself puts around a text (``"\n" + title``) stay line breaks."""
    text = str(value)
    core = text.strip("\n")
    start = text.index(core) if core else len(text)
    return (Text(text[:start]) + Text(printable(core), style=style)
            + Text(text[start + len(core):]))

def cell(value: Cell, col: Column) -> Text:
    """The one place a cell becomes terminal text: formatted by kind, cut at ``max_chars``."""
    text = format_cell(value, col.kind)
    if col.max_chars is not None and len(text) > col.max_chars:
        text = text[: col.max_chars - 1] + "…"
    return _safe(text)


def _section(section: Section, console: Console) -> None:
    if not section.rows:
        console.print(_safe(section.title, style="bold"))
    else:
        table = Table(title=section.title, title_justify="left", box=box.SIMPLE_HEAD,
                      expand=True)
        for col in section.columns:
            table.add_column(col.name, justify=col.align,
                             overflow="ellipsis" if col.wide else "fold", no_wrap=True,
                             ratio=1 if col.wide else None, min_width=12 if col.wide else None)
        for row in section.rows:
            table.add_row(*(cell(v, c) for v, c in zip(row, section.columns, strict=True)))
        console.print(table)
    for note in section.notes:
        console.print(_safe(note))
    if section.notes:
        console.print()


def _header(header: Header, console: Console) -> None:
    console.print(_safe("infraprof analyze: ", style="bold") + _safe(header.source))
    bits = [*header.producer,
            f"span {fmt_ns(header.span_ns)}"]
    console.print(_safe(" · ".join(bits)))
    if header.command:
        console.print(_safe("command: ") + _safe(header.command))
    if header.gpus_used:
        console.print(_safe(f"GPUs used: {', '.join(header.gpus_used)} "
                           f"(node has {header.gpus_in_node})"))
    elif header.gpus_in_node:
        console.print(_safe(f"GPUs: {header.gpus_in_node} in node, no GPU activity recorded"))
    else:
        console.print(_safe("GPUs: no GPU activity recorded (CPU-only capture)"))
    if header.headline:
        console.print(_safe(header.headline, style="bold"))


def _evidence(report: Report, console: Console, top: int, shown: int = 3) -> None:
    """Evidence of the first ``shown`` ranked findings with an impact (the terminal stays
    short; Markdown and HTML show every ranked finding's)."""
    with_impact = [(i, f) for i, f in ranked(report, top) if f.impact_ns > 0][:shown]
    for i, f in with_impact:
        console.print(_safe(f"#{i} {f.id} · {f.severity} · recoverable {fmt_ns(f.impact_ns)}",
                           style="bold"))
        for line in evidence_lines(f)[:12]:
            console.print(_safe("   " + line))
        console.print(_safe("   → " + f.recommendation, style="italic"))
        console.print()


def render_terminal(report: Report, width: int = 120, color: bool = False, top: int = 10) -> str:
    """The report as text for a terminal ``width`` columns wide (ANSI colours if ``color``)."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color,
                      color_system="auto" if color else None, highlight=False, soft_wrap=False)
    header = report_header(report)
    _header(header, console)
    for section in report_sections(report, top):
        _section(section, console)
        if section.key == "findings":
            _evidence(report, console, top)
            if not header.has_gpu_activity:
                console.print(_safe("No GPU activity (kernels, copies, memsets) in this trace.\n"))
    return buf.getvalue()
