"""The capture folder layout and its ``manifest.json``: the one definition of both.

``infraprof capture`` writes, and ``analyze``/``export``/``gate`` read, one folder::

    report.nsys-rep            nsys report (older nsys: report.qdrep)
    report.sqlite              its SQLite export
    profile.ncu-rep            Nsight Compute report (``capture --ncu``), with ncu.log
    pyspy.chrometrace.json     timed py-spy samples (Python apps)
    pyspy.raw.txt              collapsed stacks derived from it (aggregate)
    manifest.json              command, cwd, tools, exit code, times, clock anchor, sync pulses
    run-1 … run-K/             one such folder per run with ``capture --repeat K``

Any other folder holding exactly one nsys report or SQLite export is read the same way.
Importing this module has no side effects; reading a folder never writes to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from infraprof.errors import InputError

REPORT_BASE: Final = "report"
NSYS_REPORT: Final = "report.nsys-rep"
LEGACY_REPORT: Final = "report.qdrep"
NSYS_SQLITE: Final = "report.sqlite"
NCU_REPORT: Final = "profile.ncu-rep"
NCU_LOG: Final = "ncu.log"
PYSPY_TIMED: Final = "pyspy.chrometrace.json"
PYSPY_SPEEDSCOPE: Final = "pyspy.speedscope.json"
PYSPY_RAW: Final = "pyspy.raw.txt"
PYSPY_SVG: Final = "pyspy.svg"
MANIFEST_NAME: Final = "manifest.json"
SYNC_NAME: Final = ".sync.json"
RUN_PREFIX: Final = "run-"
# py-spy's sampling rate in captures (``py-spy record -r``), recorded as ``pyspy.rate_hz``.
PYSPY_RATE_HZ: Final = 500

NSYS_SUFFIXES: Final = (".sqlite", ".nsys-rep", ".qdrep")
NCU_SUFFIX: Final = ".ncu-rep"
# Read in this order: the SQLite export first (no nsys needed), then the reports.
NSYS_FILES: Final = (NSYS_SQLITE, NSYS_REPORT, LEGACY_REPORT)
# py-spy outputs, the timed chrometrace preferred.
PYSPY_FILES: Final = (PYSPY_TIMED, PYSPY_SPEEDSCOPE, PYSPY_RAW, PYSPY_SVG)


def run_folder_name(run: int) -> str:
    """``run-<k>`` (1-based) for ``capture --repeat``."""
    return f"{RUN_PREFIX}{run}"


@dataclass(frozen=True)
class ClockAnchor:
    """CLOCK_REALTIME and CLOCK_MONOTONIC (ns) read back to back when the capture started."""

    realtime_ns: int
    monotonic_ns: int
    read_window_ns: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Typed view of ``manifest.json`` (the fields infraprof reads back; ``raw`` holds all).

    ``pyspy_rate_hz``/``pyspy_start_mono_ns``: py-spy's ``-r`` and the CLOCK_MONOTONIC time (ns)
    it was started; ``sync_tid``/``sync_pulses``: the bootstrap's pulse thread and pulses as
    ``(start_mono_ns, end_mono_ns)``. Missing fields are ``None``/empty.
    """

    raw: Mapping[str, Any] = field(default_factory=dict)
    schema: int | None = None
    command: tuple[str, ...] = ()
    clock_anchor: ClockAnchor | None = None
    pyspy_rate_hz: float | None = None
    pyspy_start_mono_ns: int | None = None
    sync_tid: int | None = None
    sync_pulses: tuple[tuple[int, int], ...] = ()
    report: str | None = None
    sqlite: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = MANIFEST_NAME) -> Manifest:
        """Parse a manifest document; ``InputError`` (exit 3) on wrongly typed fields."""
        try:
            return cls._parse(data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"{source}: malformed capture manifest ({exc}); re-run "
                             "`infraprof capture` or delete the file") from exc

    @classmethod
    def _parse(cls, data: Mapping[str, Any]) -> Manifest:
        anchor = data.get("clock_anchor") or {}
        pyspy = data.get("pyspy") or {}
        sync = data.get("sync") or {}
        rate = pyspy.get("rate_hz")
        start = pyspy.get("start_mono_ns")
        tid = sync.get("tid")
        window = anchor.get("read_window_ns")
        return cls(
            raw=dict(data),
            schema=int(data["schema"]) if data.get("schema") is not None else None,
            command=tuple(str(arg) for arg in data.get("command") or ()),
            clock_anchor=ClockAnchor(int(anchor["realtime_ns"]), int(anchor["monotonic_ns"]),
                                     int(window) if window is not None else None)
            if "realtime_ns" in anchor else None,
            pyspy_rate_hz=float(rate) if rate else None,
            pyspy_start_mono_ns=int(start) if start is not None else None,
            sync_tid=int(tid) if tid is not None else None,
            sync_pulses=tuple((int(p["start_mono_ns"]), int(p["end_mono_ns"]))
                              for p in sync.get("pulses") or () if "start_mono_ns" in p),
            report=_optional_name(data.get("report")),
            sqlite=_optional_name(data.get("sqlite")),
        )


def _optional_name(value: Any) -> str | None:
    """A file name field: a string or ``None``."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected a file name, got {value!r}")


def read_manifest(folder: Path) -> Manifest | None:
    """``folder/manifest.json`` parsed, or ``None`` when absent (``InputError`` if unreadable)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable capture manifest ({exc}); re-run "
                         "`infraprof capture` or delete the file") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: malformed capture manifest (the top level is "
                         f"{type(data).__name__}, not an object); re-run `infraprof capture` "
                         "or delete the file")
    return Manifest.from_dict(data, str(path))


def _nonempty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


@dataclass(frozen=True)
class CaptureFolder:
    """A capture folder (see the module docstring); every lookup is read-only."""

    path: Path

    def nsys_file(self) -> Path:
        """The nsys SQLite export or report to read: the capture's own names first, else the
        folder's only ``.sqlite``/``.nsys-rep``/``.qdrep``. ``InputError`` when there is none
        or the choice is ambiguous."""
        for name in NSYS_FILES:
            if (self.path / name).is_file():
                return self.path / name
        reports = sorted(p for suffix in NSYS_SUFFIXES for p in self.path.glob("*" + suffix))
        if len(reports) == 1:
            return reports[0]
        raise InputError(
            f"{self.path}: is a directory without a single nsys report or SQLite export in it; "
            "pass the .nsys-rep or .sqlite file itself"
        )

    def ncu_reports(self) -> list[Path]:
        """Nsight Compute reports in the folder (``profile.ncu-rep`` and any other)."""
        return sorted(p for p in self.path.glob("*" + NCU_SUFFIX) if p.is_file())

    def pyspy_file(self) -> Path | None:
        """The py-spy output (chrometrace preferred), or ``None``."""
        for name in PYSPY_FILES:
            if _nonempty(self.path / name):
                return self.path / name
        return None

    def manifest(self) -> Manifest | None:
        """The parsed ``manifest.json``, or ``None``."""
        return read_manifest(self.path)

    def input_files(self) -> list[Path]:
        """Every file of the folder infraprof reads (nsys exports and reports, ncu reports,
        py-spy outputs, the manifest): what an output must never replace. Other files (an
        earlier ``analysis.json``) are fair game."""
        names = (*NSYS_FILES, *PYSPY_FILES, MANIFEST_NAME, SYNC_NAME)
        found = [self.path / name for name in names if (self.path / name).is_file()]
        found += [p for suffix in (*NSYS_SUFFIXES, NCU_SUFFIX)
                  for p in self.path.glob("*" + suffix) if p.is_file()]
        return sorted(set(found))

    def runs(self) -> list[Path]:
        """``run-1`` … ``run-K`` of a ``capture --repeat K`` folder, in run order (else ``[]``)."""
        prefix = len(RUN_PREFIX)
        found = [p for p in self.path.glob(RUN_PREFIX + "*")
                 if p.is_dir() and p.name[prefix:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[prefix:]))
