"""Helpers for tests on the shared real traces (``../shared/traces``).

The shared files are never modified and nsys is never pointed at them: ``.gz`` exports are
inflated once per session into a temporary folder, and anything handed to nsys is a private
copy. Every function here is cheap at import time so it can feed ``pytest.mark.parametrize``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ``$INFRAPROF_SHARED_TRACES`` points the tests elsewhere (used to test the CI requirement).
SHARED_TRACES = Path(os.environ.get("INFRAPROF_SHARED_TRACES")
                     or ROOT.parent / "shared" / "traces")

REPORT_SUFFIXES = (".nsys-rep", ".qdrep")
SQLITE_MAGIC = b"SQLite format 3\x00"


def _rel(path: Path) -> str:
    return path.relative_to(SHARED_TRACES).as_posix()


def _is_nsys_sqlite(path: Path) -> bool:
    """An SQLite file with a ``StringIds`` table (every nsys export has one)."""
    try:
        with path.open("rb") as fh:
            if fh.read(16) != SQLITE_MAGIC:
                return False
    except OSError:
        return False
    with ro_connect(path) as conn:
        rows = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='StringIds'").fetchall()
    return bool(rows)


def nsys_sqlite_files() -> list[str]:
    """Relative names of every nsys SQLite export under the shared traces (``.gz`` included)."""
    if not SHARED_TRACES.is_dir():
        return []
    out = [_rel(p) for p in sorted(SHARED_TRACES.rglob("*.sqlite")) if _is_nsys_sqlite(p)]
    out += [_rel(p) for p in sorted(SHARED_TRACES.rglob("*.sqlite.gz"))]
    return out


def nsys_report_files() -> list[str]:
    """Relative names of every ``.nsys-rep``/``.qdrep`` report under the shared traces."""
    if not SHARED_TRACES.is_dir():
        return []
    return [_rel(p) for p in sorted(SHARED_TRACES.rglob("*")) if p.suffix in REPORT_SUFFIXES]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def ro_connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that writes nothing beside ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        yield conn
    finally:
        conn.close()


class TraceFiles:
    """Session-wide access to shared traces: inflated ``.gz`` files and private copies."""

    def __init__(self, shared: Path, workdir: Path) -> None:
        self.shared = shared
        self.workdir = workdir
        self._inflated: dict[str, Path] = {}
        self._copies = 0

    def path(self, rel: str) -> Path:
        """Readable path of ``rel``: the shared file itself, or its inflated copy for ``.gz``.

        Only for readers that open files read-only (infraprof, ``ro_connect``); never pass it
        to nsys (use :meth:`private_copy`).
        """
        src = self.shared / rel
        if not src.is_file():
            raise FileNotFoundError(src)
        if not rel.endswith(".gz"):
            return src
        if rel not in self._inflated:
            dest = self.workdir / "inflated" / rel[: -len(".gz")]
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial = dest.with_name(dest.name + ".part")
            with gzip.open(src, "rb") as fin, partial.open("wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            partial.replace(dest)
            self._inflated[rel] = dest
        return self._inflated[rel]

    def private_copy(self, rel: str) -> Path:
        """A fresh copy of ``rel`` (inflated if ``.gz``) in its own folder, safe to give nsys."""
        self._copies += 1
        src = self.path(rel)
        folder = self.workdir / "copies" / f"{self._copies:03d}"
        folder.mkdir(parents=True)
        dest = folder / re.sub(r"[^A-Za-z0-9_.-]", "_", src.name)
        shutil.copyfile(src, dest)
        return dest
