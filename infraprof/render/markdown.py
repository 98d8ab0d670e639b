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
from infraprof.units import fmt_ns, fmt_pct

file_extension = ".md"
MAX_BYTES = 1024 * 1024

_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}|~#+!])")
_NOTE = ("\n> **Report truncated** to stay under {limit}: {n} more lines left out. "
         "The full report: `infraprof analyze --format json` or `--format html`.\n")


def md_text(value: object) -> str:
    """``value`` as inline Markdown text that renders literally (safe inside table cells)."""
    text = printable(" ".join(str(value).split()))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def cell(value: Cell, col: Column) -> str:
    """The one place a cell becomes Markdown: formatted by kind, then :func:`md_text`."""
    return md_text(format_cell(value, col.kind))


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |\n"


def _section(section: Section) -> list[str]:
    """Chunks of one section: the heading with the table header, one chunk per row, then the
    notes (a section without rows: the heading and the notes)."""
    head = f"\n### {md_text(section.title)}\n\n"
    notes = [f"\n{md_text(note)}\n" for note in section.notes]
    if not section.rows:
        return [head.rstrip("\n") + "\n" + "".join(notes)]
    sep = "|" + "|".join("---:" if c.align == "right" else "---" for c in section.columns) + "|\n"
    rows = [_row([cell(v, c) for v, c in zip(row, section.columns, strict=True)])
            for row in section.rows]
    return [head + _row([md_text(c.name) for c in section.columns]) + sep, *rows, *notes]


def _header(header: Header) -> list[str]:
    out = [f"## infraprof report: {md_text(header.name)}\n\n"]
    bits = [*header.producer,
            f"span {fmt_ns(header.span_ns)}", f"infraprof {__version__}"]
    out.append(md_text(" · ".join(bits)) + "\n\n")
    if header.command:
        out.append(f"Command: {md_text(header.command)}\n\n")
    if header.gpus_used:
        out.append(f"GPUs used: {md_text(', '.join(header.gpus_used))} "
                   f"(node has {header.gpus_in_node}) · "
                   f"**GPU busy {fmt_pct(header.busy_share)}** of the active span "
                   f"({fmt_ns(header.busy_ns)} of {fmt_ns(header.active_span_ns)})\n")
    else:
        out.append("No GPU activity (kernels, copies, memsets) in this trace.\n")
    if header.headline:
        out.append(f"\n**{md_text(header.headline)}**\n")
    return out


def _evidence(report: Report, top: int) -> list[str]:
    """One collapsible block per ranked finding, numbered as in the findings table."""
    out = []
    for i, f in ranked(report, top):
        summary = html.escape(f"#{i} {f.id} · {f.severity} · recoverable {fmt_ns(f.impact_ns)}")
        lines = "".join(f"- {md_text(line)}\n" for line in evidence_lines(f))
        fix = f"\n**Fix:** {md_text(f.recommendation)}\n" if f.recommendation else ""
        out.append(f"\n<details><summary><b>{summary}</b></summary>\n\n{md_text(f.title)}\n\n"
                   f"{lines}{fix}\n</details>\n")
    if out:
        out.insert(0, "\n### Evidence\n")
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


def render_markdown(report: Report, top: int = 10, max_bytes: int = MAX_BYTES) -> str:
    """The report as GitHub-flavoured Markdown of at most ``max_bytes`` UTF-8 bytes."""
    chunks = _header(report_header(report))
    for section in report_sections(report, top):
        chunks += _section(section)
        if section.key == "findings":
            chunks += _evidence(report, top)
    return fit(chunks, max_bytes)
