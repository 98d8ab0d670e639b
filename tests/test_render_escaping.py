"""A kernel named ``<script>alert("x")</script> & "quoted"`` goes safely through every format:
valid JSON, literal terminal text, intact Markdown tables, escaped and well-formed HTML, valid
Chrome-trace JSON; hostile frame names keep collapsed stacks and speedscope files valid."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from helpers_reports import HOSTILE, hostile_copy

from infraprof import tables as table_schema
from infraprof.inputs import load_trace
from infraprof.model.trace import Trace, TraceMeta
from infraprof.ranking import Report, build_report
from infraprof.render.chrome_trace import render_chrome_trace
from infraprof.render.html import render_html
from infraprof.render.json_report import render_json
from infraprof.render.markdown import md_text, render_markdown
from infraprof.render.stacks import render_collapsed, render_speedscope
from infraprof.render.terminal import render_terminal

_PIPE = re.compile(r"(?<!\\)\|")
_VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    path = hostile_copy(tmp_path_factory.mktemp("hostile"))
    rep = build_report(load_trace(path, None))
    assert HOSTILE in set(rep.trace.kernels["name"])
    return rep


def test_json_keeps_the_name(report: Report) -> None:
    data = json.loads(render_json(report))
    assert HOSTILE in {k["name"] for k in data["kernels"]}


def test_terminal_prints_it_literally(report: Report) -> None:
    text = render_terminal(report, width=200, color=False)
    assert HOSTILE in text


def _unmd(cell: str) -> str:
    return html.unescape(re.sub(r"\\(.)", r"\1", cell.strip()))


def test_markdown_tables_stay_intact(report: Report) -> None:
    md = render_markdown(report)
    assert "<script" not in md and 'alert("x")</script>' not in md
    tables = re.findall(r"(?:^\|.*\n)+", md, flags=re.M)
    assert tables
    for table in tables:
        lines = table.splitlines()
        widths = {len(_PIPE.findall(line)) for line in lines}
        assert len(widths) == 1, table
    rows = [line for line in md.splitlines() if line.startswith("|") and "script" in line]
    assert rows
    cells = [_unmd(c) for row in rows for c in _PIPE.split(row)[1:-1]]
    assert HOSTILE in cells


def test_md_text_escapes_markdown_and_html() -> None:
    assert md_text("a|b") == r"a\|b"
    assert md_text("x_y*z`") == r"x\_y\*z\`"
    assert md_text("<b>&") == "&lt;b&gt;&amp;"
    assert md_text("two\nlines") == "two lines"


class _Balance(HTMLParser):
    """Checks every non-void element is closed in order; records <script> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()


def test_html_escapes_and_stays_well_formed(report: Report) -> None:
    page = render_html(report)
    assert 'alert("x")' not in page and "<script>alert" not in page
    assert html.escape(HOSTILE, quote=True) in page  # tables
    # plotly labels: only & < > escaped (plotly shows &quot; literally); JSON-encoded in a script
    assert json.dumps(html.escape(HOSTILE, quote=False))[1:-1].replace("/", "\\u002f") in page
    assert "&amp;quot;" not in page and "alert(&quot;x&quot;)&lt;\\u002f" not in page
    parser = _Balance()
    parser.feed(page)
    parser.close()
    assert not parser.errors and not parser.stack
    assert all("src" not in attrs for attrs in parser.scripts)


def test_chrome_trace_is_valid_json(report: Report) -> None:
    data = json.loads(render_chrome_trace(report))
    names = {e["name"] for e in data["traceEvents"] if e["ph"] == "X"}
    assert HOSTILE in names


def _cpu_report() -> Report:
    gtid = (4242 << 24) | 4243
    samples = pd.DataFrame({"start_ns": [10, 20, 30], "global_tid": [gtid] * 3,
                            "pid": [4242] * 3, "tid": [4243] * 3, "callchain_id": [1, 1, 2]})
    frames = pd.DataFrame({
        "source": ["sampling"] * 4, "callchain_id": [1, 1, 2, 2], "depth": [0, 1, 0, 1],
        "symbol": [HOSTILE + ";evil\n  frame", "main", "leaf", "main"],
        "module": ["/lib/x.so", "/bin/app", "/lib/x.so", "/bin/app"]})
    threads = pd.DataFrame({"global_tid": [gtid], "pid": [4242], "tid": [4243],
                            "name": ["worker;1 <t>"]})
    trace = Trace(meta=TraceMeta(source="cpu.sqlite", sqlite_path="cpu.sqlite"),
                  cpu_samples=table_schema.conform(samples, table_schema.CPU_SAMPLES),
                  callchains=table_schema.conform(frames, table_schema.CALLCHAIN_FRAMES),
                  threads=table_schema.conform(threads, table_schema.THREADS))
    return build_report(trace)


def test_collapsed_stacks_stay_one_line_per_stack() -> None:
    text = render_collapsed(_cpu_report())
    lines = text.splitlines()
    assert len(lines) == 2
    for line in lines:
        stack, count = line.rsplit(" ", 1)
        assert count.isdigit()
        assert stack.count(";") == 2  # thread;main;leaf
    assert any(line.startswith("worker:1 <t> (4243);main;") for line in lines)
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == 3


def test_speedscope_keeps_names(tmp_path: Path) -> None:
    data = json.loads(render_speedscope(_cpu_report()))
    names = {f["name"] for f in data["shared"]["frames"]}
    assert HOSTILE + ";evil frame" in names
    (profile,) = data["profiles"]
    assert len(profile["samples"]) == len(profile["weights"]) == 3
