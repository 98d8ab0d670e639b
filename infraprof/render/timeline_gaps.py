"""The idle gaps a timeline export draws, read lazily from the gap attribution's columnar table.

:class:`GapColumns` is the one place the exports read the gap attribution
(``report.analysis.attributions``, a :class:`~infraprof.analyses.gap_table.GapTable`). Its
``frame`` holds ``start_ns, end_ns, device_id`` and ``gap`` (the table row) per gap; the
strings and per-category parts of a gap are decoded only for the rows a writer asks for (one
chunk at a time), from the table's integer codes and small string tables, so memory grows
with 32 bytes a gap, not with one Python object per gap and column.

Per gap, in this order (:meth:`GapColumns.columns`; ``present`` is False where a gap has no
value): ``cause`` (its attributed category: the largest part, the first of equal parts in the
gap's own part order, or ``unattributed`` without an attribution), ``finding_id`` (the
report's ``gap.<cause>`` finding when the report has it), then, with an attribution,
``launch`` (the launching call's name), ``thread`` (its thread's name), ``nvtx`` (its
innermost NVTX range), ``exposed_by`` (the drain that exposed host work) and one
``<category>_ns`` per category that some gap has time in (sorted by name; ns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from infraprof.analyses.gap_table import CATEGORIES, HOST_ROW, GapTable, LaunchCalls
from infraprof.analyses.host_columns import CODES as HOST_CODES
from infraprof.analyses.host_columns import texts
from infraprof.ranking import Report
from infraprof.tables import as_frame

I64 = npt.NDArray[np.int64]
Obj = npt.NDArray[np.object_]
Mask = npt.NDArray[np.bool_]
Column = tuple[str, np.ndarray, Mask]  # kind ("int" | "str"), values, present


@dataclass
class _HostParts:
    """Host gaps' parts as sorted ``row * len(categories) + category`` keys and their ns, and
    their ``exposed_by`` as sorted rows and names."""

    categories: list[str]
    keys: I64
    ns: I64
    exposed_rows: I64
    exposed: Obj

    def part(self, rows: I64, index: int) -> tuple[I64, Mask]:
        """Parts of category ``index`` of ``rows`` that host details set (values, set)."""
        return _lookup(self.keys, self.ns, rows * len(self.categories) + index)

    def exposed_by(self, rows: I64) -> tuple[Obj, Mask]:
        return _lookup(self.exposed_rows, self.exposed, rows)


def _lookup(keys: I64, values: np.ndarray, wanted: I64) -> tuple[np.ndarray, Mask]:
    """``values`` at ``wanted`` in the sorted ``keys``, and where a key was found."""
    pos = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    found = (keys[pos] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)
    return (values[pos] if len(keys) else np.zeros(len(wanted), dtype=values.dtype)), found


@dataclass(frozen=True)
class _GapCodes:
    """The gap table's columns the export reads (see :class:`GapTable`)."""

    has_launch: Mask
    api_name: I64
    call: npt.NDArray[np.integer[Any]]
    calls: LaunchCalls
    nvtx: I64
    category: npt.NDArray[np.int8]
    dur: I64
    api_names: tuple[str, ...]
    nvtx_names: tuple[str, ...]


class GapColumns:
    """The gaps of ``report`` (module docstring); an empty frame without an analysis."""

    def __init__(self, report: Report) -> None:
        a = report.analysis
        table = a.attributions if a is not None else GapTable()
        self.found = {f.id for f in report.findings}
        if a is not None and not len(table):
            start = [np.asarray(tl.gaps.starts, dtype=np.int64) for tl in a.timelines]
            end = [np.asarray(tl.gaps.ends, dtype=np.int64) for tl in a.timelines]
            device = [np.full(len(s), tl.device_id, dtype=np.int64)
                      for s, tl in zip(start, a.timelines, strict=True)]
        else:
            start = [table.g0.astype(np.int64)]
            end = [table.g1.astype(np.int64)]
            device = [table.device.astype(np.int64)]
        self.frame = as_frame(pd.DataFrame({
            "start_ns": np.concatenate([np.zeros(0, np.int64), *start]),
            "end_ns": np.concatenate([np.zeros(0, np.int64), *end]),
            "device_id": np.concatenate([np.zeros(0, np.int64), *device])}))
        self.frame["gap"] = np.arange(len(self.frame), dtype=np.int64)
        self.attributed = bool(len(table))
        if not self.attributed:
            return
        self.table = _GapCodes(table.has_launch.astype(bool), table.api_name, table.call,
                               table.calls, table.nvtx, table.category, table.dur, table.api_names,
                               table.nvtx_names)  # not the table: its host details can go
        self.cause: npt.NDArray[np.int8] = table.cause_codes()
        self.host = _host_parts(table)
        self.threads = {int(g): str(n) for g, n in zip(report.trace.threads["global_tid"],
                                                         report.trace.threads["name"],
                                                         strict=True) if n is not None}

    def causes(self, rows: I64) -> Obj:
        """Cause of each gap of ``rows`` (table rows)."""
        if not self.attributed:
            return np.full(len(rows), "unattributed", dtype=object)
        return np.array(CATEGORIES, dtype=object)[self.cause[rows]]

    def names(self, rows: I64) -> Obj:
        """Slice name of each gap of ``rows``: ``idle: <cause>`` (one string per cause)."""
        if not self.attributed:
            return np.full(len(rows), "idle: unattributed", dtype=object)
        return np.array([f"idle: {c}" for c in CATEGORIES], dtype=object)[self.cause[rows]]

    def columns(self, rows: I64) -> dict[str, Column]:
        """The columns of the module docstring for ``rows`` (table rows)."""
        n = len(rows)
        if not self.attributed:
            return {"cause": ("str", self.causes(rows), np.ones(n, dtype=bool)),
                    "finding_id": ("str", np.full(n, None, dtype=object),
                                   np.zeros(n, dtype=bool))}
        t = self.table
        found_ids = np.array([f"gap.{c}" if f"gap.{c}" in self.found else None
                              for c in CATEGORIES], dtype=object)
        finding = found_ids[self.cause[rows]]
        launched = t.has_launch[rows].astype(bool)
        api_names = np.array([*t.api_names, ""], dtype=object)
        nvtx_names = np.array([*t.nvtx_names, ""], dtype=object)
        gtid = t.calls.at(t.call[rows], "global_tid")
        thread = pd.Series(gtid).map(self.threads)
        nvtx = t.nvtx[rows]
        exposed, has_exposed = self.host.exposed_by(rows)
        out: dict[str, Column] = {
            "cause": ("str", self.causes(rows), np.ones(n, dtype=bool)),
            "finding_id": ("str", finding, np.array([f is not None for f in finding.tolist()],
                                                    dtype=bool)),
            "launch": ("str", api_names[np.where(launched, t.api_name[rows], -1)], launched),
            "thread": ("str", thread.astype(object).to_numpy(dtype=object),
                       launched & (gtid != 0) & thread.notna().to_numpy(dtype=bool)),
            "nvtx": ("str", nvtx_names[np.where(nvtx >= 0, nvtx, -1)], launched & (nvtx >= 0)),
            "exposed_by": ("str", exposed, has_exposed & np.array(
                [e is not None for e in exposed.tolist()], dtype=bool)),
        }
        single = t.category[rows] != HOST_ROW
        dur = t.dur[rows]
        for index, cat in enumerate(self.host.categories):
            from_host, set_by_host = self.host.part(rows, index)
            own = single & (t.category[rows] == CATEGORIES.index(cat)) if cat in CATEGORIES \
                else np.zeros(n, dtype=bool)
            value = np.where(set_by_host, from_host, np.where(own, dur, -1)).astype(np.int64)
            present = value >= 0
            out[f"{cat}_ns"] = ("int", np.where(present, value, 0), present)
        return out


def _host_parts(table: GapTable) -> _HostParts:
    """Categories some gap has time in (a single-category gap's own, a host gap's parts),
    sorted, and the host gaps' parts and drains in lookup form."""
    single = table.category != HOST_ROW
    parts = table.host.parts()
    cats = {CATEGORIES[code] for code in np.unique(table.category[single]).tolist()}
    cats.update(HOST_CODES[code] for code in np.unique(parts.code).tolist())
    categories = sorted(cats)
    index = np.array([categories.index(c) if c in cats else -1 for c in HOST_CODES],
                     dtype=np.int64)
    keys = table.host.rows[parts.gap] * len(categories) + index[parts.code]
    order = np.argsort(keys, kind="stable")
    return _HostParts(categories, keys[order], parts.ns[order], table.host.rows,
                      texts(table.host.exposed_by))
