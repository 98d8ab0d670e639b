"""HTML report of a real trace: self-contained (plotly.js embedded once, no network
references), downsampling stated, and opened in headless Chromium: the plots render, the page
logs no console message and makes no network request.

Chromium is Debian's ``chromium`` (``scripts/install-chromium.sh``, run by ``make test`` as
root); without it the browser test skips, except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers_reports import MINIWEATHER, ROOT, report_for
from helpers_traces import TraceFiles
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.ranking import Report
from infraprof.render.html import render_html
from infraprof.tables import largest_positions as longest

pytestmark = pytest.mark.realtraces

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)
_REMOTE = re.compile(r"""(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def report(trace_files: TraceFiles) -> Report:
    return report_for(trace_files.path(MINIWEATHER))


@pytest.fixture(scope="module")
def page(report: Report, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def test_plotly_js_embedded_once(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count("window.PlotlyConfig") == 1
    figures = text.count('class="plotly-graph-div"')
    assert figures >= 3 and text.count("Plotly.newPlot(") == figures
    assert len(text) > 3_000_000  # the plotly.js bundle itself


def test_no_network_references(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    markup = _SCRIPT.sub("", text)
    assert not _REMOTE.search(markup)
    assert "<link" not in markup and "@import" not in markup and "url(" not in markup
    for tag in re.findall(r"<script\b[^>]*>", text, re.I):
        assert "src" not in tag


def test_timeline_colours_gaps_by_cause(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "idle: sync" in text and "idle: host-cpu" in text  # legend entries per cause
    assert "GPU 0 \\u00b7 stream 13" in text or "GPU 0 · stream 13" in text  # timeline rows
    assert "Downsampled for drawing" not in text
    assert "cause: sync" in text and "launched by cuLaunchKernel" in text  # hover evidence


def test_downsampling_is_stated(report: Report) -> None:
    text = render_html(report, max_ops_per_row=100, max_gaps=50)
    assert "Downsampled for drawing: GPU 0 · stream 13: 3787 operations drawn as 100 bars" in text
    assert "the 50 longest of" in text


def test_cpu_only_trace_has_no_timeline() -> None:
    text = render_html(report_for(ROOT / "sample_traces" / "cpu_only_stall_app.sqlite"))
    assert "No GPU activity" in text and "GPU timeline" not in text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required in CI: run scripts/install-chromium.sh as root")
    pytest.skip("chromium not installed (sudo sh scripts/install-chromium.sh)")


def _browser(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            "--hide-scrollbars", "--window-size=1400,2000", "--virtual-time-budget=10000",
            *extra, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for (network isolation key of a file:// page); chromium's
    own background requests are not the page's."""
    data = json.loads(netlog.read_text(encoding="utf-8"))
    types = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    urls = []
    for ev in data["events"]:
        p = ev.get("params", {})
        from_page = str(p.get("network_isolation_key", "")).startswith("file://")
        if (types.get(ev["type"]) == "URL_REQUEST_START_JOB" and from_page
                and not str(p.get("url", "")).startswith("file:")):
            urls.append(str(p.get("url")))
    return urls


def _png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into an array."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    bpp = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.int32)
    for y in range(height):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        up = out[y - 1] if y else np.zeros_like(line)
        if f in (0, 2):
            out[y] = (line + (up if f == 2 else 0)) % 256
            continue
        row = np.zeros_like(line)
        for x in range(len(line)):
            a = row[x - bpp] if x >= bpp else 0
            c = up[x - bpp] if x >= bpp else 0
            if f == 1:
                pred = a
            elif f == 3:
                pred = (a + up[x]) // 2
            else:
                pa, pb, pc = abs(up[x] - c), abs(a - c), abs(a + up[x] - 2 * c)
                pred = a if pa <= pb and pa <= pc else (up[x] if pb <= pc else c)
            row[x] = (line[x] + pred) % 256
        out[y] = row
    return out.reshape(height, width, bpp)[:, :, :3]


def test_opens_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    netlog = tmp_path / "net.json"
    dom = _browser(page, tmp_path, "--dump-dom", f"--log-net-log={netlog}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('class="main-svg"') >= 6, "plotly did not draw the figures"
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert _page_requests(netlog) == []
    shot = tmp_path / "shot.png"
    res = _browser(page, tmp_path, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = _png_pixels(shot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 20
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert coloured.mean() > 0.01, "no coloured plot pixels in the screenshot"
    if os.environ.get("INFRAPROF_KEEP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["INFRAPROF_KEEP_SCREENSHOT"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=40), st.integers(0, 45))
def test_longest_gaps_are_the_stable_sort_prefix(values: list[int], count: int) -> None:
    """The drawn gaps: the ``count`` longest, ties by position, as a stable sort of every
    gap by length would give them (many equal lengths drawn on purpose)."""
    array = np.array(values, dtype=np.int64)
    expected = np.argsort(-array, kind="stable")[:count]
    assert longest(array, count).tolist() == expected.tolist()
