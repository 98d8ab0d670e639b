"""py-spy output -> normalized sample and stack tables.

Formats (detected by content, not name; see ``docs/capture.md``):

* **chrometrace** (``-f chrometrace``): a JSON array of ``B``/``E`` slices, ``ts`` in µs on
  py-spy's own monotonic clock. Identical consecutive stacks are merged into one slice, so the
  slices are expanded back into samples at the sampling period (``rate_hz``). The only *timed*
  format: ``samples.start_ns`` is on the py-spy clock (align with :mod:`infraprof.model.clock`).
* **speedscope** (``-f speedscope``): one ``sampled`` profile per thread, relative order only.
* **raw** (``-f raw``): collapsed stacks ``root;...;leaf count``.
* **flamegraph** (``-f flamegraph``, inferno SVG): stacks and counts rebuilt from the frame
  rectangles (``fg:x``/``fg:w``).

The last three have no absolute time: they load as an *aggregate* profile and the profile says
"time correlation not possible". With ``--threads`` py-spy adds a root frame
``thread (<OS tid>): <name>``; it is removed from the stacks and becomes ``tid``.

Tables (stack frames are root first, ``depth`` 0 = outermost Python frame):

* ``samples`` (timed only): ``start_ns, tid, thread_key, stack_id``
* ``aggregate``: ``tid, stack_id, count``
* ``frames``: ``stack_id, depth, function, file, line``
* ``threads``: ``tid, thread_key, name``
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd

from infraprof import tables as table_schema
from infraprof.collapsed import write_collapsed
from infraprof.errors import InputError

PYSPY_SAMPLES: Final[table_schema.TableSpec] = {
    "start_ns": "int64", "tid": "int64", "thread_key": "int64", "stack_id": "int64",
}
PYSPY_AGGREGATE: Final[table_schema.TableSpec] = {"tid": "int64", "stack_id": "int64",
                                                  "count": "int64"}
PYSPY_FRAMES: Final[table_schema.TableSpec] = {
    "stack_id": "int64", "depth": "int64", "function": "object", "file": "object",
    "line": "int64",
}
PYSPY_THREADS: Final[table_schema.TableSpec] = {"tid": "int64", "thread_key": "int64",
                                                "name": "object"}

DEFAULT_RATE_HZ: Final = 100.0
# Most samples a chrometrace may expand into (slices re-sampled at the sampling period; about
# 640 MB; 11 h of one thread at 500 Hz). Beyond it the file is refused as bad input (exit 3).
MAX_EXPANDED_SAMPLES: Final = 20_000_000
MAX_RATE_HZ: Final = 1_000_000.0
MAX_TS_US: Final = 9.2e15  # ns must fit int64
UNKNOWN_TID: Final = -1
NO_TIME_NOTE: Final = (
    "time correlation not possible: py-spy {fmt} output has no absolute timestamps; only the "
    "aggregate CPU profile is used (record with `-f chrometrace`, as `infraprof capture` does)"
)

Frame = tuple[str, str, int]
_THREAD_RE = re.compile(r"^thread \((\d+)\)(?::\s*(.*))?$")
_PROCESS_RE = re.compile(r"^process \d+:")
_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SVG_COUNT_RE = re.compile(r" \([\d,]+ samples?, [\d.]+%\)$")
_SVG_NODE_RE = re.compile(r"<g><title>(?P<title>[^<]*)</title><rect (?P<attrs>[^>]*)/?>")
_ATTR_RE = re.compile(r'([\w:]+)="([^"]*)"')
_BOOTSTRAP_SUFFIX = "infraprof/capture/bootstrap.py"
_SPEEDSCOPE_THREAD_RE = re.compile(r'^Thread (\d+)(?: "(.*)")?')
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class PyspyProfile:
    """One py-spy output file, normalized."""

    path: str
    format: str
    timed: bool
    samples: pd.DataFrame
    aggregate: pd.DataFrame
    frames: pd.DataFrame
    threads: pd.DataFrame
    rate_hz: float | None = None
    command: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def stack(self, stack_id: int) -> list[Frame]:
        """Frames of ``stack_id``, root first."""
        rows = self.frames[self.frames["stack_id"] == stack_id].sort_values("depth")
        return [(str(f), str(p), int(n)) for f, p, n in
                zip(rows["function"], rows["file"], rows["line"], strict=True)]

    def collapsed(self) -> str:
        """The aggregate as py-spy ``raw`` text (``thread (tid);frame;...;leaf count``)."""
        return collapsed_text(self.aggregate, self.frames, self.threads)


def _counter() -> defaultdict[tuple[int, int], int]:
    return defaultdict(int)


class _Interner:
    def __init__(self) -> None:
        self.ids: dict[tuple[Frame, ...], int] = {}

    def get(self, stack: tuple[Frame, ...]) -> int:
        stack = strip_bootstrap(stack)
        sid = self.ids.get(stack)
        if sid is None:
            sid = self.ids[stack] = len(self.ids)
        return sid

    def frames(self) -> pd.DataFrame:
        rows = [(sid, depth, f, p, n) for stack, sid in self.ids.items()
                for depth, (f, p, n) in enumerate(stack)]
        if not rows:
            return table_schema.empty(PYSPY_FRAMES)
        frame = pd.DataFrame(rows, columns=list(PYSPY_FRAMES))
        return table_schema.conform(frame, PYSPY_FRAMES)


def _is_wrapper(frame: Frame) -> bool:
    path = frame[1].replace("\\", "/")
    return path.endswith(_BOOTSTRAP_SUFFIX) or path.endswith("runpy.py") or path == "<frozen runpy>"


def strip_bootstrap(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """Drop the root frames of infraprof's bootstrap (and runpy) above the user's code; stacks
    entirely inside the bootstrap (its sync pulses) are kept whole."""
    if not stack or not stack[0][1].replace("\\", "/").endswith(_BOOTSTRAP_SUFFIX):
        return stack
    for i, frame in enumerate(stack):
        if not _is_wrapper(frame):
            return stack[i:]
    return stack


def parse_frame(text: str) -> Frame:
    """``func (file:line)`` -> ``(func, file, line)``; unparseable text keeps ``file=""``."""
    m = _FRAME_RE.match(text)
    if m is None:
        return (text, "", 0)
    return (m["func"], m["file"], int(m["line"] or 0))


def format_frame(frame: Frame) -> str:
    func, path, line = frame
    if not path:
        return func
    return f"{func} ({path}:{line})" if line else f"{func} ({path})"


def _split_root(names: list[str]) -> tuple[int, str | None, list[str]]:
    """Remove ``process``/``thread`` root frames; return ``(tid, thread name, rest)``."""
    tid, name = UNKNOWN_TID, None
    while names and _PROCESS_RE.match(names[0]):
        names = names[1:]
    if names:
        m = _THREAD_RE.match(names[0])
        if m:
            tid, name, names = int(m[1]), m[2] or None, names[1:]
    return tid, name, names


def read_pyspy(path: Path, rate_hz: float | None = None) -> PyspyProfile:
    """Read any py-spy output. ``rate_hz`` (``py-spy -r``) is needed to expand chrometrace
    slices into samples; without it py-spy's default of 100 Hz is assumed and noted."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the py-spy file ({exc.strerror})") from exc
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    head = text.lstrip()[:200]
    if not head:
        raise InputError(f"{path}: py-spy file is empty; the profiler may have failed")
    if head.startswith("<?xml") or head.startswith("<svg"):
        return _read_svg(path, text)
    if head.startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: truncated or invalid JSON ({exc.msg} at line "
                             f"{exc.lineno}); re-record the py-spy profile") from exc
        if isinstance(doc, dict) and "profiles" in doc and "shared" in doc:
            return _checked(path, "speedscope", lambda: _read_speedscope(path, doc))
        events = doc.get("traceEvents") if isinstance(doc, dict) else doc
        if isinstance(events, list):
            from infraprof.readers.pyspy_chrometrace import read_chrometrace

            return _checked(path, "chrometrace",
                            lambda: read_chrometrace(path, events, rate_hz))
        raise InputError(f"{path}: JSON that is neither py-spy chrometrace nor speedscope")
    return _checked(path, "raw", lambda: _read_raw(path, text))


def _checked(path: Path, fmt: str, read: Callable[[], PyspyProfile]) -> PyspyProfile:
    """Run a format reader; a value of the wrong type or out of range anywhere in a
    plausible-looking file (``"line": "x"``, ``"shared": []``) is bad input (exit 3)."""
    try:
        return read()
    except (IndexError, KeyError, TypeError, ValueError, AttributeError,
            OverflowError) as exc:
        raise InputError(f"{path}: malformed py-spy {fmt} file ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); re-record the profile with py-spy") from exc


def _aggregate_frame(counts: dict[tuple[int, int], int]) -> pd.DataFrame:
    if not counts:
        return table_schema.empty(PYSPY_AGGREGATE)
    rows = [(tid, sid, n) for (tid, sid), n in counts.items()]
    return table_schema.conform(pd.DataFrame(rows, columns=list(PYSPY_AGGREGATE)), PYSPY_AGGREGATE)


def _threads_frame(threads: dict[tuple[int, int], str | None]) -> pd.DataFrame:
    if not threads:
        return table_schema.empty(PYSPY_THREADS)
    rows = [(tid, key, name) for (tid, key), name in threads.items()]
    return table_schema.conform(pd.DataFrame(rows, columns=list(PYSPY_THREADS)), PYSPY_THREADS)


def _untimed(path: Path, fmt: str, stacks: _Interner, counts: dict[tuple[int, int], int],
             threads: dict[tuple[int, int], str | None], rate: float | None,
             command: str | None = None, extra: tuple[str, ...] = ()) -> PyspyProfile:
    return PyspyProfile(
        path=str(path), format=fmt, timed=False, samples=table_schema.empty(PYSPY_SAMPLES),
        aggregate=_aggregate_frame(counts), frames=stacks.frames(),
        threads=_threads_frame(threads), rate_hz=rate, command=command,
        notes=(NO_TIME_NOTE.format(fmt=fmt), *extra),
    )


def _read_raw(path: Path, text: str) -> PyspyProfile:
    stacks, counts = _Interner(), _counter()
    threads: dict[tuple[int, int], str | None] = {}
    parsed = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            raise InputError(f"{path}: not py-spy raw/collapsed output (line {line[:60]!r}); "
                             "expected `frame;frame;...;leaf <count>`")
        tid, name, names = _split_root(stack_text.split(";"))
        threads.setdefault((tid, tid), name)
        sid = stacks.get(tuple(parse_frame(n) for n in names))
        counts[(tid, sid)] += int(count_text)
        parsed += 1
    if not parsed:
        raise InputError(f"{path}: no stacks in the py-spy raw file")
    return _untimed(path, "raw", stacks, counts, threads, None)


def _speedscope_frames(path: Path, doc: dict[str, Any]) -> list[Frame]:
    shared = doc.get("shared")
    frames = shared.get("frames", []) if isinstance(shared, dict) else None
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise InputError(f"{path}: speedscope `shared.frames` is not a list of frames")
    try:
        return [(str(f.get("name", "?")), str(f.get("file") or ""), int(f.get("line") or 0))
                for f in frames]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{path}: a speedscope frame has a non-integer line") from exc


def _check_sample(path: Path, sample: Any, n_frames: int, profile: int) -> list[int]:
    """A speedscope sample: a list of frame indices into ``shared.frames``."""
    if not isinstance(sample, list) or not all(
            isinstance(j, int) and not isinstance(j, bool) and 0 <= j < n_frames
            for j in sample):
        raise InputError(f"{path}: speedscope profile {profile} has a sample with a frame "
                         f"index outside shared.frames (0..{n_frames - 1}); the file is "
                         "damaged, re-record it")
    return sample


def _read_speedscope(path: Path, doc: dict[str, Any]) -> PyspyProfile:
    table = _speedscope_frames(path, doc)
    stacks, counts = _Interner(), _counter()
    threads: dict[tuple[int, int], str | None] = {}
    rate, empty_samples = None, 0
    profiles = doc.get("profiles")
    if not isinstance(profiles, list) or not all(isinstance(p, dict) for p in profiles):
        raise InputError(f"{path}: speedscope `profiles` is not a list of profiles")
    for i, prof in enumerate(profiles):
        m = _SPEEDSCOPE_THREAD_RE.match(str(prof.get("name", "")))
        tid = int(m[1]) if m else -(i + 2)
        threads[(tid, tid)] = (m[2] or None) if m else str(prof.get("name"))
        weights = prof.get("weights") or []
        first = weights[0] if isinstance(weights, list) and weights else None
        if prof.get("unit") == "seconds" and isinstance(first, (int, float)) and (
                math.isfinite(first) and first > 0):
            rate = 1.0 / float(first)
        if prof.get("type") == "evented":
            raise InputError(f"{path}: evented speedscope profiles are not py-spy output")
        samples = prof.get("samples") or []
        for sample in samples if isinstance(samples, list) else [samples]:
            if not sample:
                empty_samples += 1
                continue
            sample = _check_sample(path, sample, len(table), i)
            names = [format_frame(table[j]) for j in sample]
            root_tid, _, rest = _split_root(names)
            frames = tuple(table[j] for j in sample[len(sample) - len(rest):])
            sid = stacks.get(frames)
            counts[(tid if root_tid == UNKNOWN_TID else root_tid, sid)] += 1
    extra = (f"{empty_samples} empty samples skipped",) if empty_samples else ()
    return _untimed(path, "speedscope", stacks, counts, threads, rate, extra=extra)


def _read_svg(path: Path, text: str) -> PyspyProfile:
    title = re.search(r'<text id="title"[^>]*>([^<]*)</text>', text)
    command = html.unescape(title[1]).strip() if title else None
    rate_m = re.search(r"(?:--rate|-r)[ =](\d+(?:\.\d+)?)", command or "")
    rate = float(rate_m[1]) if rate_m else (DEFAULT_RATE_HZ if command else None)
    total_m = re.search(r'total_samples="(\d+)"', text)
    total = int(total_m[1]) if total_m else None
    inverted = re.search(r"var inverted = true", text) is not None
    nodes: list[tuple[int, int, int, str]] = []  # y, x, w, name
    for m in _SVG_NODE_RE.finditer(text):
        attrs = dict(_ATTR_RE.findall(m["attrs"]))
        name = _SVG_COUNT_RE.sub("", html.unescape(m["title"]))
        if "fg:x" in attrs and "fg:w" in attrs:
            x, w = int(attrs["fg:x"]), int(attrs["fg:w"])
        elif total is not None:
            x = round(float(attrs.get("x", "0").rstrip("%")) / 100 * total)
            w = round(float(attrs.get("width", "0").rstrip("%")) / 100 * total)
        else:
            continue
        nodes.append((int(float(attrs.get("y", "0"))), x, w, name))
    if not nodes:
        raise InputError(f"{path}: SVG without flamegraph frames; not py-spy/inferno output")
    levels = sorted({y for y, *_ in nodes}, reverse=not inverted)
    depth_of = {y: i for i, y in enumerate(levels)}
    by_depth: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for y, x, w, name in nodes:
        by_depth[depth_of[y]].append((x, w, name))
    stacks, counts = _Interner(), _counter()
    threads: dict[tuple[int, int], str | None] = {}
    # Walk the tree: a node's parent is the node one level up whose [x, x+w) holds its x.
    paths: dict[tuple[int, int], list[str]] = {}
    child_total: dict[tuple[int, int], int] = defaultdict(int)
    for depth in sorted(by_depth):
        for x, w, name in sorted(by_depth[depth]):
            parent = None
            for px, pw, _ in by_depth.get(depth - 1, []):
                if px <= x < px + pw:
                    parent = (depth - 1, px)
                    break
            prefix = paths.get(parent, []) if parent else []
            if parent:
                child_total[parent] += w
            paths[(depth, x)] = [*prefix, name] if not (depth == 0 and name == "all") else []
    for depth, row in by_depth.items():
        for x, w, _ in row:
            own = w - child_total.get((depth, x), 0)
            names = paths[(depth, x)]
            if own <= 0 or not names:
                continue
            tid, tname, rest = _split_root(list(names))
            threads.setdefault((tid, tid), tname)
            counts[(tid, stacks.get(tuple(parse_frame(n) for n in rest)))] += own
    return _untimed(path, "flamegraph", stacks, counts, threads, rate, command)


def collapsed_text(aggregate: pd.DataFrame, frames: pd.DataFrame, threads: pd.DataFrame) -> str:
    """py-spy ``raw`` (collapsed stack) text for an aggregate table: root frame
    ``thread (tid): name`` when the thread is known (see :mod:`infraprof.collapsed`)."""
    names = {int(t): n for t, n in zip(threads["tid"], threads["name"], strict=True)}
    by_stack: dict[int, list[str]] = defaultdict(list)
    for sid, f, p, n in frames.sort_values(["stack_id", "depth"])[
            ["stack_id", "function", "file", "line"]].itertuples(index=False):
        by_stack[int(sid)].append(format_frame((str(f), str(p), int(n))))
    stacks = []
    for tid, sid, count in aggregate[["tid", "stack_id", "count"]].itertuples(index=False):
        parts = by_stack.get(int(sid), [])
        if int(tid) != UNKNOWN_TID:
            name = names.get(int(tid))
            parts = [f"thread ({int(tid)})" + (f": {name}" if name else ""), *parts]
        stacks.append((parts, int(count)))
    return write_collapsed(stacks)
