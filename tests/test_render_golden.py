"""Golden files of the terminal (width 100, no colour), Markdown and JSON reports of a real
trace (NCAR miniWeather, nsys 2022.4). Regenerate: ``INFRAPROF_UPDATE_GOLDEN=1``."""

from __future__ import annotations

import pytest
from helpers_reports import (
    MINIWEATHER,
    check_golden,
    report_for,
    stable,
    stable_json,
    stable_text,
)
from helpers_traces import TraceFiles

from infraprof import __version__
from infraprof.ranking import Report
from infraprof.render.json_report import render_json
from infraprof.render.markdown import render_markdown
from infraprof.render.terminal import render_terminal

pytestmark = pytest.mark.realtraces


@pytest.fixture(scope="module")
def report(trace_files: TraceFiles) -> Report:
    return stable(report_for(trace_files.path(MINIWEATHER)), MINIWEATHER.split("/")[-1])


def test_terminal_golden(report: Report) -> None:
    text = render_terminal(report, width=100, color=False, top=10)
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    # Rich pads lines to the width; trailing blanks are stripped so editors cannot break it.
    check_golden("miniweather_baseline.txt",
                 "".join(line.rstrip() + "\n" for line in stable_text(text).splitlines()))


def test_markdown_golden(report: Report) -> None:
    check_golden("miniweather_baseline.md", stable_text(render_markdown(report, top=10)))


def test_json_golden(report: Report) -> None:
    text = render_json(report)
    assert stable_json(text).replace('"<version>"', '"x"') == text.replace(
        f'"version": "{__version__}"', '"version": "x"')
    check_golden("miniweather_baseline.json", stable_json(text))


def test_renderers_are_deterministic(report: Report) -> None:
    assert render_markdown(report) == render_markdown(report)
    assert render_json(report) == render_json(report)
