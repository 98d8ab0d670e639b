"""Several inputs at once: argument expansion (files, folders of reports, globs) and the rank
of each report from its capture environment.

* :func:`expand_inputs`: each argument is a report/export/capture folder/Kineto trace; a
  folder that is *not* a capture folder (:func:`is_capture_folder`: no ``report.*``, no
  ``manifest.json`` and two or more report-like entries) stands for the reports in it
  (files and capture folders, one level, by name); an argument that does not
  exist and holds ``*``, ``?`` or ``[`` is a glob. A report and its own SQLite export side by
  side (``r0.nsys-rep`` + ``r0.sqlite``) count once (the export). Duplicates (same resolved
  path) are refused: a rank would be counted twice. At most :data:`MAX_INPUTS` inputs, counted
  before any report is opened, and :data:`MAX_FOLDER_ENTRIES` entries read per folder.
* :func:`capture_environment`: the environment nsys recorded for the launched process
  (``META_DATA_CAPTURE`` ``PROCESS_<n>:ENVIRONMENT_VARIABLE`` rows, nsys 2023.3+), and
  :func:`rank_from_environment`: ``RANK``, ``OMPI_COMM_WORLD_RANK``, ``SLURM_PROCID``,
  ``PMI_RANK`` (first present wins).
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from infraprof.capture.layout import MANIFEST_NAME, NSYS_FILES
from infraprof.errors import InputError
from infraprof.inputs.detect import TRACE_KINDS, detect
from infraprof.readers.sqlite_db import SqliteFile, has_sqlite_header

RANK_VARIABLES: Final = ("RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "PMI_RANK")
MAX_INPUTS: Final = 4096
MAX_FOLDER_ENTRIES: Final = 65536
_GLOB_CHARS: Final = frozenset("*?[")
_ENV_KEY: Final = ":ENVIRONMENT_VARIABLE"
_REPORT_ENDINGS: Final = (".sqlite", ".nsys-rep", ".qdrep", ".json", ".sqlite.gz", ".json.gz")


def _has_capture_files(path: Path) -> bool:
    return any((path / name).exists() for name in (*NSYS_FILES, MANIFEST_NAME))


def _report_like(entry: Path) -> bool:
    """Cheap (name only) pre-check of a folder entry that may be a report."""
    if entry.name.startswith("."):
        return False
    if entry.is_dir():
        return _has_capture_files(entry)
    return entry.name.lower().endswith(_REPORT_ENDINGS)


def _listing(folder: Path) -> list[Path]:
    """The folder's entries by name; at most :data:`MAX_FOLDER_ENTRIES` are read."""
    entries = list(itertools.islice(folder.iterdir(), MAX_FOLDER_ENTRIES + 1))
    if len(entries) > MAX_FOLDER_ENTRIES:
        raise InputError(f"{folder}: more than {MAX_FOLDER_ENTRIES} entries; pass the reports "
                         "themselves or a glob that matches only them")
    return sorted(entries)


def _too_many(where: Path | str, count: int) -> InputError:
    return InputError(f"{where}: {count} inputs or more, more than {MAX_INPUTS} at once; "
                      "analyse fewer reports at once (a narrower glob or folder)")


def is_capture_folder(path: Path) -> bool:
    """A capture folder, as ``analyze`` always read one: ``report.*`` or ``manifest.json`` in
    it, or at most one report-like entry (the folder's only export is its report). A folder
    with two or more is a folder of reports (it stops reading at the second)."""
    if _has_capture_files(path):
        return True
    try:
        found = (entry for entry in path.iterdir() if _report_like(entry))
        return len(list(itertools.islice(found, 2))) < 2
    except OSError:
        return True


def _folder_reports(folder: Path) -> list[Path]:
    """The traces in a folder of reports (module docstring), sorted by name; at most
    :data:`MAX_INPUTS` (counted before any file is opened)."""
    entries = [e for e in _listing(folder) if _report_like(e)]
    exports = {e.name.split(".")[0] for e in entries if e.suffix == ".sqlite"}
    entries = [e for e in entries if not (e.suffix in (".nsys-rep", ".qdrep")
                                          and e.name.split(".")[0] in exports)]
    if len(entries) > MAX_INPUTS:
        raise _too_many(folder, len(entries))
    # capture folders as they are; files by content (a broken report is an error, exit 3)
    found = [e for e in entries if e.is_dir() or detect(e) in TRACE_KINDS]
    if not found:
        raise InputError(f"{folder}: holds no nsys report, SQLite export, capture folder or "
                         "PyTorch profiler trace; pass the reports themselves")
    return found


def _expand_one(arg: Path, room: int) -> list[Path]:
    """The inputs ``arg`` stands for; :func:`_too_many` beyond ``room`` more."""
    if not arg.exists() and _GLOB_CHARS & set(str(arg)):
        matches = sorted(Path(m) for m in itertools.islice(glob.iglob(str(arg)), room + 1))
        if not matches:
            raise InputError(f"{arg}: the pattern matches no file; check the path or quote it")
        out: list[Path] = []
        for match in matches:
            out += _expand_one(match, room - len(out))
            if len(out) > room:
                raise _too_many(arg, len(out))
        return out
    if arg.is_dir() and not is_capture_folder(arg):
        return _folder_reports(arg)
    return [arg]


def expand_inputs(args: Sequence[Path]) -> list[Path]:
    """Every input the arguments stand for, in order (module docstring). ``InputError`` (exit
    3) for an empty folder, a glob matching nothing, a duplicate or more than
    :data:`MAX_INPUTS` inputs (a folder holds at most :data:`MAX_FOLDER_ENTRIES` entries)."""
    paths: list[Path] = []
    for arg in args:
        paths += _expand_one(Path(arg), MAX_INPUTS - len(paths))
        if len(paths) > MAX_INPUTS:
            raise _too_many(Path(arg), len(paths))
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise InputError(f"{path}: given twice (also as {seen[key]}); pass each report "
                             "once")
        seen[key] = path
    return paths


def protected_files(args: Sequence[Path]) -> list[Path]:
    """Every file an output must not replace: the arguments, and every report-like entry of
    the folders of reports and glob matches they name (also a ``.nsys-rep`` whose export
    was read instead)."""
    out: list[Path] = []
    for arg in map(Path, args):
        if not arg.exists() and _GLOB_CHARS & set(str(arg)):
            out += [Path(m) for m in itertools.islice(glob.iglob(str(arg)), MAX_INPUTS + 1)]
        elif arg.is_dir() and not is_capture_folder(arg):
            out += [e for e in _listing(arg) if _report_like(e)]
        else:
            out.append(arg)
    return out


def capture_environment(sqlite_path: str) -> dict[int, dict[str, str]]:
    """Per launched process index ``n`` (``PROCESS_<n>``), the environment nsys recorded
    (empty when the export has none: nsys before 2023.3, or not an nsys export)."""
    path = Path(sqlite_path)
    if not sqlite_path or not path.is_file() or not has_sqlite_header(path):
        return {}
    with SqliteFile(path) as db:
        if "META_DATA_CAPTURE" not in db.tables:
            return {}
        rows = db.query("SELECT name, value FROM META_DATA_CAPTURE WHERE name LIKE ?",
                        (f"PROCESS_%{_ENV_KEY}",))
    out: dict[int, dict[str, str]] = {}
    for name, value in rows:
        head = str(name)[: -len(_ENV_KEY)]
        index = head.removeprefix("PROCESS_")
        text = str(value or "")
        if not index.isdigit() or "=" not in text:
            continue
        key, _, raw = text.partition("=")
        out.setdefault(int(index), {})[key] = raw.strip('"')
    return out


def rank_from_environment(env: Mapping[str, str]) -> tuple[int, str] | None:
    """``(rank, variable)`` from the first of :data:`RANK_VARIABLES` holding an integer ≥ 0."""
    for name in RANK_VARIABLES:
        value = env.get(name, "").strip()
        if value.isdigit():
            return int(value), name
    return None
