"""Markdown report: size limit (GitHub's 1 MiB job-summary cap) with a truncation note, whole
rows and blocks only, and the sections of the terminal report."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from helpers_reports import DEMO, report_for

from infraprof.analyses.findings import Finding
from infraprof.ranking import Report
from infraprof.render.markdown import MAX_BYTES, fit, render_markdown

_PIPE = re.compile(r"(?<!\\)\|")


@pytest.fixture(scope="module")
def report() -> Report:
    return report_for(DEMO)


def _tables_intact(md: str) -> None:
    for table in re.findall(r"(?:^\|.*\n)+", md, flags=re.M):
        assert len({len(_PIPE.findall(line)) for line in table.splitlines()}) == 1, table


def test_sections(report: Report) -> None:
    md = render_markdown(report)
    for heading in ("## infraprof report: demo\\_host\\_stall.sqlite", "### Ranked findings",
                    "### Evidence", "### Top kernels by GPU time", "### CUDA API calls",
                    "### NVTX ranges", "<details><summary>"):
        assert heading in md
    assert md.count("<details>") == md.count("</details>")
    assert "truncated" not in md
    _tables_intact(md)


def test_huge_report_is_cut_under_one_mib(report: Report) -> None:
    many = [Finding(id=f"x.{i}", category="sync", title="t" * 200 + f" {i}", severity="low",
                    impact_ns=10**9 - i, share=0.01, evidence={"gpu_idle_ns": 5, "gaps": 1},
                    recommendation="r" * 100) for i in range(8000)]
    big = replace(report, findings=many)
    md = render_markdown(big, top=len(many))
    assert len(md.encode()) <= MAX_BYTES
    assert "**Report truncated** to stay under 1 MiB" in md
    assert md.count("<details>") == md.count("</details>")
    _tables_intact(md)


def test_fit_keeps_whole_chunks() -> None:
    chunks = [f"| {i} | {'x' * 50} |\n" for i in range(100)]
    out = fit(chunks, 1000)
    assert len(out.encode()) <= 1000
    body, note = out.split("\n> ", 1)
    assert all(line in chunks for line in body.splitlines(keepends=True))
    n = int(re.search(r"(\d+) more lines", note).group(1))  # type: ignore[union-attr]
    assert n == 100 - len(body.splitlines())
    assert fit(chunks, 10**6) == "".join(chunks)
