"""Baseline store: per-run gate metrics in one SQLite file (via ``sqlite-utils``).

Tables:

* ``runs`` — ``id`` (primary key), ``name`` (baseline name, default ``main``), ``commit``,
  ``branch``, ``host``, ``gpu``, ``created_utc`` (ISO 8601), ``source`` and ``metrics_json``
  (the full :meth:`~infraprof.gate.metrics.RunMetrics.to_dict` document, samples included);
* ``metric_values`` — ``run_id``, ``metric``, ``value``: one row per run-level value, indexed
  by metric name for trend queries (``SELECT … WHERE metric = 'step:duration:p50_ns'``).

A save is one transaction (all runs of the call or none). Queries return the newest runs
first; CI compares a candidate with the last ``K`` runs of ``main`` on the same GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from infraprof.errors import InputError
from infraprof.gate.metrics import RunMetrics


@dataclass(frozen=True)
class StoredRun:
    """One row of ``runs`` (``metrics`` decoded)."""

    id: int
    name: str
    commit: str | None
    branch: str | None
    host: str | None
    gpu: str | None
    created_utc: str
    source: str
    metrics: RunMetrics

    def to_dict(self, with_metrics: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "commit": self.commit,
                               "branch": self.branch, "host": self.host, "gpu": self.gpu,
                               "created_utc": self.created_utc, "source": self.source,
                               "metrics": len(self.metrics.values)}
        if with_metrics:
            out["values"] = self.metrics.values
        return out


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


def detect_commit() -> str | None:
    """``$GITHUB_SHA``, ``$CI_COMMIT_SHA`` or ``git rev-parse HEAD``."""
    return (os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA")
            or _git("rev-parse", "HEAD"))


def detect_branch() -> str | None:
    """``$GITHUB_HEAD_REF``/``$GITHUB_REF_NAME``, ``$CI_COMMIT_REF_NAME`` or git."""
    return (os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME")
            or os.environ.get("CI_COMMIT_REF_NAME")
            or _git("rev-parse", "--abbrev-ref", "HEAD"))


_STORE_TABLES = {"runs": {"id", "name", "metrics_json"}, "metric_values": {"run_id", "metric"}}


def _require_store(path: Path) -> None:
    """Refuse an existing file that is not an infraprof baseline store: a foreign SQLite
    database (say an nsys export) must never gain our tables. Opened read-only."""
    uri = "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            tables = {str(r[0]) for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {t: {str(r[1]) for r in conn.execute(f'PRAGMA table_info("{t}")')}
                       for t in _STORE_TABLES if t in tables}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not an SQLite baseline store ({exc}); give --db a new "
                         "file name or an existing store") from exc
    if any(not want <= columns.get(t, set()) for t, want in _STORE_TABLES.items()):
        raise InputError(f"{path}: not an infraprof baseline store (a different SQLite "
                         "database); give --db a new file name or an existing store")


def _open(path: Path, create: bool) -> sqlite_utils.Database:
    if not create and not path.is_file():
        raise InputError(f"{path}: no baseline store here; create one with "
                         "`infraprof baseline save --db PATH INPUT`")
    if create and os.path.exists(path) and os.path.getsize(path) > 0:
        _require_store(path)
    try:
        db = sqlite_utils.Database(path)
        if create and "runs" not in db.table_names():
            db.table("runs").create({"id": int, "name": str, "commit": str, "branch": str,
                               "host": str, "gpu": str, "created_utc": str, "source": str,
                               "metrics_json": str}, pk="id")
            db.table("runs").create_index(["name", "branch", "created_utc"])
            db.table("metric_values").create({"run_id": int, "metric": str, "value": float},
                                       foreign_keys=[("run_id", "runs", "id")])
            db.table("metric_values").create_index(["metric", "run_id"])
        if "runs" not in db.table_names():
            raise InputError(f"{path}: not an infraprof baseline store (no runs table)")
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not a readable SQLite baseline store ({exc})") from exc
    return db


def save_runs(path: Path, runs: Sequence[RunMetrics], name: str = "main",
              commit: str | None = None, branch: str | None = None,
              host: str | None = None, gpu: str | None = None) -> list[int]:
    """Store ``runs`` (one transaction); returns their ids. ``commit``/``branch``/``host``
    default to :func:`detect_commit`/:func:`detect_branch`/the host name, ``gpu`` to the
    GPU names recorded in each run."""
    db = _open(path, create=True)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    commit = commit or detect_commit()
    branch = branch or detect_branch()
    host = host or socket.gethostname()
    ids: list[int] = []
    with db.conn:
        for run in runs:
            row = {"name": name, "commit": commit, "branch": branch, "host": host,
                   "gpu": gpu or run.context.get("gpu"), "created_utc": now,
                   "source": run.source, "metrics_json": json.dumps(run.to_dict())}
            run_id = int(str(db.table("runs").insert(row).last_pk))
            db.table("metric_values").insert_all(
                [{"run_id": run_id, "metric": k, "value": v} for k, v in run.values.items()])
            ids.append(run_id)
    return ids


def query_runs(path: Path, name: str | None = None, branch: str | None = None,
               commit: str | None = None, host: str | None = None, gpu: str | None = None,
               last: int | None = None) -> list[StoredRun]:
    """Stored runs matching every given filter, newest first, at most ``last``."""
    db = _open(path, create=False)
    where, params = [], []
    for col, value in (("name", name), ("branch", branch), ("host", host), ("gpu", gpu)):
        if value is not None:
            where.append(f"[{col}] = ?")
            params.append(value)
    if commit is not None:
        where.append("[commit] LIKE ?")
        params.append(commit + "%")
    rows = db.table("runs").rows_where(" AND ".join(where) or None, params,
                                 order_by="created_utc DESC, id DESC", limit=last)
    out = []
    for row in rows:
        try:
            metrics = RunMetrics.from_dict(json.loads(row["metrics_json"]),
                                           f"{path}#run{row['id']}")
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: run {row['id']} has corrupt metrics ({exc})") from exc
        out.append(StoredRun(id=row["id"], name=row["name"], commit=row["commit"],
                             branch=row["branch"], host=row["host"], gpu=row["gpu"],
                             created_utc=row["created_utc"], source=row["source"],
                             metrics=metrics))
    return out
