"""The one correlation join: GPU operations ↔ the CUDA API calls that launched them.

nsys gives every kernel, memcpy and memset the ``correlationId`` of the runtime/driver call that
enqueued it. Correlation ids are unique per *process* only, so the join key is
``(pid, correlation_id)``. A few exports hold the same call twice (the saxpy trace); the first
row per key wins, so every operation matches at most one call.

Columns taken from the call are renamed so they never collide with the operation's own:
``start_ns → api_start_ns``, ``end_ns → api_end_ns``, ``name → api_name``, ``tid → api_tid``;
``global_tid`` keeps its name (the launching thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from infraprof import tables as table_schema

JOIN_KEY = ["pid", "correlation_id"]
CALL_COLUMN_NAMES = {"start_ns": "api_start_ns", "end_ns": "api_end_ns", "name": "api_name",
                     "tid": "api_tid", "global_tid": "global_tid"}
DEFAULT_CALL_COLUMNS = ("start_ns", "end_ns", "name", "global_tid")


def launch_calls(api_calls: pd.DataFrame,
                 columns: Sequence[str] = DEFAULT_CALL_COLUMNS) -> pd.DataFrame:
    """One row per ``(pid, correlation_id)`` of ``api_calls``: the key plus ``columns``,
    renamed as the module docstring says."""
    picked = api_calls[[*JOIN_KEY, *columns]].drop_duplicates(JOIN_KEY)
    return table_schema.as_frame(picked.rename(columns={c: CALL_COLUMN_NAMES[c]
                                                        for c in columns}))


def join_launch_calls(ops: pd.DataFrame, api_calls: pd.DataFrame,
                      columns: Sequence[str] = DEFAULT_CALL_COLUMNS,
                      how: Literal["left", "inner"] = "left") -> pd.DataFrame:
    """``ops`` (kernels, memcpys, memsets or :meth:`Trace.gpu_ops`) with the launching call's
    ``columns`` added. ``how="left"`` keeps operations whose call is not in the trace (their
    call columns are NaN); ``"inner"`` keeps only matched ones. Row order follows ``ops``."""
    joined = ops.merge(launch_calls(api_calls, columns), on=JOIN_KEY, how=how)
    return table_schema.as_frame(joined)
