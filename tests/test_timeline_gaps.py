"""render/timeline_gaps.GapColumns: per-chunk decoding of the gap table's codes, checked
against the table's rows and host details decoded one row at a time (any row order, repeated
rows, equal parts, a thread without a name)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from infraprof.analyses.gap_table import CATEGORIES, HOST_ROW, GapTable, LaunchCalls
from infraprof.analyses.host_columns import CODE, HostColumns
from infraprof.render.timeline_gaps import GapColumns


def _host(details: dict[int, tuple[int, dict[str, int], str | None]]) -> HostColumns:
    """Host columns of ``row -> (gap start, parts, exposed_by)``: each part one run, the runs
    back to back from the gap's start in the parts' order."""
    rows, run_gap, run_code, run_lo, run_hi = [], [], [], [], []
    for i, (row, (g0, parts, _)) in enumerate(sorted(details.items())):
        rows.append(row)
        t = g0
        for cat, ns in parts.items():
            run_gap.append(i)
            run_code.append(CODE[cat])
            run_lo.append(t)
            run_hi.append(t + ns)
            t += ns
    n = len(rows)
    exposed = np.array([details[row][2] for row in rows], dtype=object)
    return HostColumns(
        rows=np.array(rows, dtype=np.int64), run_gap=np.array(run_gap, dtype=np.int64),
        run_code=np.array(run_code, dtype=np.int8), run_lo=np.array(run_lo, dtype=np.int64),
        run_hi=np.array(run_hi, dtype=np.int64), drain_name=np.full(n, None, dtype=object),
        drain_start=np.zeros(n, dtype=np.int64), drain_end=np.zeros(n, dtype=np.int64),
        drain_code=np.full(n, -1, dtype=np.int8), drain_blocked=np.zeros(n, dtype=np.int64),
        exposed_by=exposed)


def _table() -> GapTable:
    sync, memcpy, host_cpu = (CATEGORIES.index(c) for c in ("sync", "memcpy", "host-cpu"))
    return GapTable(
        g0=np.array([0, 10, 20, 30, 40, 50], dtype=np.int64),
        g1=np.array([5, 18, 29, 33, 47, 60], dtype=np.int64),
        device=np.array([0, 0, 1, 0, 1, 0], dtype=np.int64),
        has_launch=np.array([True, False, True, True, False, True]),
        api_name=np.array([1, -1, 0, 1, -1, 0], dtype=np.int64),
        call=np.array([0, -1, 1, 2, -1, 3], dtype=np.int32),
        calls=LaunchCalls(np.zeros(4, np.int64), np.zeros(4, np.int64),
                          np.array([7, 9, 0, 8], dtype=np.int64)),
        nvtx=np.array([0, -1, -1, 1, -1, 0], dtype=np.int64),
        category=np.array([sync, HOST_ROW, memcpy, HOST_ROW, host_cpu, HOST_ROW],
                          dtype=np.int8),
        api_names=("cudaLaunchKernel", "cudaMemcpyAsync"),
        nvtx_names=("step", 'fwd "<&>"'),
        host=_host({1: (10, {"host-cpu": 3, "sync": 5}, "cudaStreamSynchronize"),
                    3: (30, {"host-wait": 3}, None),
                    5: (50, {"memcpy": 5, "host-cpu": 5}, None)}))


def _report(table: GapTable, findings: tuple[str, ...]) -> Any:
    threads = SimpleNamespace(threads={"global_tid": [7, 8], "name": ["main", None]})
    return SimpleNamespace(analysis=SimpleNamespace(attributions=table, timelines=[]),
                           findings=[SimpleNamespace(id=f) for f in findings],
                           trace=threads)


def _expected(table: GapTable, findings: tuple[str, ...]) -> list[dict[str, object]]:
    """Each row's present values, from the table's rows and host details one at a time."""
    out = []
    for row in range(len(table)):
        detail = table.host.get(row)
        dur = int(table.g1[row] - table.g0[row])
        parts = detail.parts if detail else {CATEGORIES[int(table.category[row])]: dur}
        cause = max(parts, key=parts.__getitem__)
        values: dict[str, object] = {"cause": cause}
        if f"gap.{cause}" in findings:
            values["finding_id"] = f"gap.{cause}"
        if table.has_launch[row]:
            values["launch"] = table.api_names[int(table.api_name[row])]
            if int(table.gtid[row]) == 7:
                values["thread"] = "main"
            if table.nvtx[row] >= 0:
                values["nvtx"] = table.nvtx_names[int(table.nvtx[row])]
        if detail and detail.exposed_by is not None:
            values["exposed_by"] = detail.exposed_by
        values.update({f"{cat}_ns": ns for cat, ns in parts.items() if ns >= 0})
        out.append(values)
    return out


def test_columns_match_the_table_in_any_row_order() -> None:
    table = _table()
    findings = ("gap.sync", "gap.memcpy")
    gaps = GapColumns(_report(table, findings))
    rows = np.array([5, 0, 3, 3, 1, 4, 2], dtype=np.int64)
    columns = gaps.columns(rows)
    categories = sorted({"sync", "memcpy", "host-cpu", "host-wait"})
    assert list(columns) == ["cause", "finding_id", "launch", "thread", "nvtx", "exposed_by",
                             *(f"{c}_ns" for c in categories)]
    expected = _expected(table, findings)
    for at, row in enumerate(rows.tolist()):
        got = {name: values[at] for name, (_, values, present) in columns.items()
               if present[at]}
        got = {k: int(v) if isinstance(v, np.integer) else v for k, v in got.items()}
        assert got == expected[row], row
    assert gaps.names(rows).tolist() == [f"idle: {expected[r]['cause']}" for r in rows]
    assert gaps.frame["gap"].tolist() == list(range(6))
    assert set(gaps.columns(np.zeros(0, dtype=np.int64))) == set(columns)


def test_without_attribution_gaps_are_unattributed() -> None:
    report = SimpleNamespace(analysis=None, findings=[], trace=None)
    gaps = GapColumns(report)
    assert len(gaps.frame) == 0
    assert list(gaps.columns(np.zeros(0, dtype=np.int64))) == ["cause", "finding_id"]
