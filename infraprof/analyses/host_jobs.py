"""Per (gap with host activity, category) *jobs* and their time windows, as tables.

The frame analyses (nsys CPU samples: :mod:`~infraprof.analyses.native_frames`; py-spy:
:mod:`~infraprof.analyses.python_frames`) pool the launching thread's stacks during the time a
gap spent in one category. A job is one (gap, category) with time in it; its windows are the
category's runs in that gap (``HostDetail.segments``). Both tables come from the columns of
:class:`~infraprof.analyses.host_columns.HostColumns`, with no loop over gaps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from infraprof.analyses.gap_table import GapTable
from infraprof.analyses.host_columns import CODE, CODES, PartRows, gap_code_key
from infraprof.analyses.sites import part_sites
from infraprof.tables import as_frame, positions_of


def host_jobs(table: GapTable, categories: tuple[str, ...]) -> pd.DataFrame:
    """One row per (gap with host activity, category of ``categories`` with time in it), by
    gap (table order), then in the order of ``categories``; index 0, 1, ... (the job number).
    Columns: ``host`` (host index), ``code`` (:data:`~infraprof.analyses.host_columns.CODES`),
    ``category``, ``ns`` (the gap's time in it), ``site`` (:func:`~infraprof.analyses.sites.
    site_of`), ``device_id``, ``start_ns``, ``end_ns`` (the gap), ``global_tid`` (the
    launching thread)."""
    parts = table.host.parts()
    wanted = np.array([CODE[cat] for cat in categories], dtype=np.int64)
    rank = np.full(len(CODES), len(categories), dtype=np.int64)
    rank[wanted] = np.arange(len(categories))
    mine = np.flatnonzero(rank[parts.code] < len(categories))
    mine = mine[np.lexsort((rank[parts.code[mine]], parts.gap[mine]))]
    picked = PartRows(parts.gap[mine], parts.code[mine], parts.ns[mine], parts.order[mine])
    rows = table.host.rows[picked.gap]
    return as_frame(pd.DataFrame({
        "host": picked.gap, "code": picked.code.astype(np.int64),
        "category": np.array(CODES, dtype=object)[picked.code], "ns": picked.ns,
        "site": part_sites(table, picked), "device_id": np.asarray(table.device[rows]),
        "start_ns": table.g0[rows], "end_ns": table.g1[rows],
        "global_tid": table.launch_values("global_tid", rows)}))


def job_windows(table: GapTable, jobs: pd.DataFrame) -> pd.DataFrame:
    """``job, global_tid, start_ns, end_ns``: the runs of each job's category in its gap, by
    job, in time order."""
    host = table.host
    at, found = positions_of(gap_code_key(jobs["host"].to_numpy(), jobs["code"].to_numpy()),
                             gap_code_key(host.run_gap, host.run_code))
    hit = np.flatnonzero(found)
    job = at[hit]
    order = np.lexsort((hit, job))
    job, hit = job[order], hit[order]
    return as_frame(pd.DataFrame({"job": job.astype(np.int64),
                         "global_tid": jobs["global_tid"].to_numpy(np.int64)[job],
                         "start_ns": host.run_lo[hit], "end_ns": host.run_hi[hit]}))
