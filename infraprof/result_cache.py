"""Result cache: the finished output of an analysis, so re-analysing an unchanged input costs
only the interpreter's start-up.

The columnar *table* cache (:mod:`infraprof.readers.columnar_cache`) saves reading an export;
this cache saves the analysis too. ``infraprof analyze FILE -f json`` stores its exact JSON
text (and the warning lines it printed on stderr); ``gate``/``compare``/``baseline save``
store the gate metrics of each trace they analyse. A hit prints or returns those bytes without
importing numpy or pandas (``analyze``) or reading the trace (``gate``).

Where: ``<cache dir>/results/<key>.entry`` (the cache dir of
:func:`infraprof.cache_paths.cache_dir`). An entry is one regular file: a JSON header
line (entry format, key, body size, body SHA-256 and the kind's metadata such as the stderr
lines) and the body. Entries are written to a temporary file in the same folder and renamed
into place (atomic); a read opens with ``O_NOFOLLOW`` and takes only regular files; an entry
whose header, size or checksum does not match is deleted and rebuilt by the caller. The
folder is bounded (:data:`MAX_TOTAL_BYTES`): after each write the least recently used
entries (a hit refreshes an entry's mtime) go first. A ``results`` folder that is a symlink
or not a folder, or a cache that cannot be written, only means "no result cache": any
failure falls back to analysing, so the cache never changes a result.

Key (SHA-256 of the canonical JSON of all of it; ``None``, i.e. no caching, when it cannot
be formed):

* the **kind** of result (``analyze-json``, ``gate-run``) and :data:`ENTRY_FORMAT`;
* the **input**: the path as given (it is printed in the output) and resolved, its size, mtime
  (ns), inode and a SHA-256 of its first 64 KiB (`readers.sqlite_db.export_identity`, as the
  table cache keys an export). Only a
  single regular file that starts with the SQLite magic (an nsys SQLite export) is keyed;
  reports (``.nsys-rep``: their export depends on the installed nsys), capture folders,
  Kineto traces, compressed inputs, an export with a ``-wal`` or ``-journal`` file beside
  it (SQLite would read it too), multi-process exports (``analyze`` splits them) and runs
  with ``--ncu``/``--pyspy`` are never cached. The identity is taken again after the analysis and
  nothing is stored if the file changed meanwhile;
* the **settings** the caller passes: for ``analyze``, the config file found (its path and
  its parsed ``[tool.infraprof]`` table) and the command-line settings (``--top``,
  ``--min-impact``, every ``--disable``), i.e. everything
  :func:`infraprof.api.analysis_config` builds the effective ``AnalysisConfig`` from (its
  defaults are code, covered below); for the gate, ``--step``;
* the **code**: infraprof's version and a SHA-256 over the contents of every ``.py`` file of
  the installed package (about 140 files, 1 MB: a few ms);
* the **runtime**: the Python version and the installed numpy and pandas distributions.

Switches: ``--no-cache`` (``analyze``) turns off both caches; ``INFRAPROF_RESULT_CACHE=0``
(or ``off``/``no``/``false``) turns off only this one, for every command;
``infraprof cache clear`` removes its entries with the others.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infraprof._version import __version__
from infraprof.cache_paths import cache_dir
from infraprof.readers.sqlite_db import export_identity

ENV_SWITCH = "INFRAPROF_RESULT_CACHE"
"""Set to ``0``, ``off``, ``no`` or ``false`` to bypass the result cache only."""
ENTRY_FORMAT = 1
"""Bump when the entry layout or the meaning of a kind's body changes."""
MAX_TOTAL_BYTES = 512 << 20
"""Bound on the ``results`` folder (bytes, default 512 MiB); least recently used entries go."""
STALE_TEMP_S = 3600
_OFF = ("0", "off", "no", "false")
_SUFFIX = ".entry"
_RUNTIME_PACKAGES = ("numpy", "pandas")


@dataclass(frozen=True)
class Entry:
    """A cached result: ``body`` (the bytes the kind stores) and its ``meta`` (JSON values)."""

    body: bytes
    meta: dict[str, Any]


def enabled() -> bool:
    """False when :data:`ENV_SWITCH` turns the result cache off."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF


def results_dir() -> Path:
    """The folder of the result entries."""
    return cache_dir() / "results"


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 over the relative path and contents of every ``.py`` file of the package."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(_python_files(root)):
        data = path.read_bytes()
        name = path.relative_to(root).as_posix().encode()
        digest.update(b"%s\0%d\0" % (name, len(data)))
        digest.update(data)
    return digest.hexdigest()


def _python_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                found += _python_files(Path(entry.path))
            elif entry.name.endswith(".py"):
                found.append(Path(entry.path))
    return found


@functools.cache
def runtime_versions() -> tuple[str, ...]:
    """The Python version and the installed numpy/pandas distributions (their ``dist-info``
    folder names, found without importing them; ``?`` when not found)."""
    found = [sys.version]
    for name in _RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None:
            found.append(f"{name}:?")
            continue
        site = Path(origin).resolve().parent.parent
        try:
            infos = sorted(e for e in os.listdir(site)
                           if e.lower().startswith(f"{name}-") and e.endswith(".dist-info"))
        except OSError:
            infos = []
        found.append(f"{name}:{origin}:{','.join(infos) or '?'}")
    return tuple(found)


def input_identity(path: Path) -> dict[str, Any] | None:
    """What names ``path``'s content (module docstring), or None when it is not a single
    regular SQLite file that can be keyed safely."""
    try:
        if Path(f"{path}-wal").exists() or Path(f"{path}-journal").exists():
            return None
    except (OSError, ValueError):
        return None
    identity = export_identity(path)
    if identity is None:
        return None
    return {"given": str(path), "resolved": identity.resolved, "size": identity.size,
            "mtime_ns": identity.mtime_ns, "inode": identity.inode,
            "header_sha256": identity.header_sha256}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=lambda o: f"{type(o).__name__}:{o!r}")


def entry_key(kind: str, path: Path, settings: Mapping[str, Any]) -> str | None:
    """The key of ``kind``'s result for input ``path`` under ``settings``; None when the
    cache is off or the input cannot be keyed (then nothing is looked up or stored)."""
    if not enabled():
        return None
    identity = input_identity(path)
    if identity is None:
        return None
    try:
        document = _canonical({
            "kind": kind, "format": ENTRY_FORMAT, "version": __version__,
            "code": code_fingerprint(), "runtime": runtime_versions(), "input": identity,
            "settings": dict(settings)})
    except (OSError, TypeError, ValueError):
        return None
    return hashlib.sha256(document.encode("utf-8", "surrogateescape")).hexdigest()


def still_same(path: Path, key: str, kind: str, settings: Mapping[str, Any]) -> bool:
    """True when ``path`` still has the identity ``key`` was made from (checked before a
    result is stored, so a file changed during the analysis is not cached)."""
    return entry_key(kind, path, settings) == key


def _usable_dir(create: bool) -> Path | None:
    folder = results_dir()
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return None
    return folder if stat.S_ISDIR(st.st_mode) else None


def _read_regular(path: Path, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def load(key: str) -> Entry | None:
    """The entry stored under ``key``, or None (missing, not a regular file, or damaged: a
    damaged entry is removed so that the caller's fresh result replaces it)."""
    folder = _usable_dir(create=False)
    if folder is None:
        return None
    path = folder / f"{key}{_SUFFIX}"
    data = _read_regular(path, MAX_TOTAL_BYTES)
    if data is None:
        return None
    try:
        head, _, body = data.partition(b"\n")
        header = json.loads(head)
        if (header["format"] != ENTRY_FORMAT or header["key"] != key
                or header["size"] != len(body)
                or header["sha256"] != hashlib.sha256(body).hexdigest()
                or not isinstance(header["meta"], dict)):
            raise ValueError("entry does not match its header")
    except (ValueError, KeyError, TypeError):
        _remove(path)
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # least recently used goes first
    return Entry(body, header["meta"])


def store(key: str, body: bytes, meta: Mapping[str, Any] | None = None,
          max_total_bytes: int = MAX_TOTAL_BYTES) -> bool:
    """Write ``body`` (and ``meta``) as the entry of ``key`` (atomic), then evict down to
    ``max_total_bytes``. Returns False (and leaves nothing) when it cannot be written."""
    try:
        header = json.dumps({"format": ENTRY_FORMAT, "key": key, "size": len(body),
                             "sha256": hashlib.sha256(body).hexdigest(),
                             "meta": dict(meta or {})}, ensure_ascii=True).encode()
    except (TypeError, ValueError):
        return False
    if len(header) + 1 + len(body) > max_total_bytes:
        return False
    folder = _usable_dir(create=True)
    if folder is None:
        return False
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=folder)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header + b"\n" + body)
        os.replace(tmp, folder / f"{key}{_SUFFIX}")
    except OSError:
        _remove(Path(tmp))
        return False
    evict(folder, max_total_bytes)
    return True


def entries(folder: Path | None = None) -> list[tuple[Path, int, int]]:
    """Every entry (path, size in bytes, mtime in ns), oldest first."""
    folder = folder or _usable_dir(create=False)
    if folder is None:
        return []
    found = []
    try:
        with os.scandir(folder) as items:
            for item in items:
                if item.name.endswith(_SUFFIX) and not item.name.startswith(".") and \
                        item.is_file(follow_symlinks=False):
                    st = item.stat(follow_symlinks=False)
                    found.append((Path(item.path), st.st_size, st.st_mtime_ns))
    except OSError:
        return []
    return sorted(found, key=lambda e: (e[2], e[0].name))


def evict(folder: Path, max_total_bytes: int = MAX_TOTAL_BYTES) -> list[Path]:
    """Remove the least recently used entries until the folder holds at most
    ``max_total_bytes``, and temporary files of runs that died (older than
    :data:`STALE_TEMP_S`). Returns what was removed."""
    removed = []
    now_ns = time.time_ns()
    for tmp in folder.glob(".tmp-*"):
        try:
            if now_ns - tmp.lstat().st_mtime_ns > STALE_TEMP_S * 10**9:
                _remove(tmp)
                removed.append(tmp)
        except OSError:
            continue
    listed = entries(folder)
    total = sum(size for _, size, _ in listed)
    for path, size, _ in listed:
        if total <= max_total_bytes:
            break
        _remove(path)
        removed.append(path)
        total -= size
    return removed


def clear() -> int:
    """Remove every entry; returns how many."""
    listed = entries()
    for path, _, _ in listed:
        _remove(path)
    return len(listed)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
