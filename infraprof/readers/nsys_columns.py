"""Column helpers of the nsys export readers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from infraprof import tables as table_schema
from infraprof.readers.sqlite_db import SqliteFile


def column_or(db: SqliteFile, table: str, name: str, default: str = "NULL") -> str:
    """The SQL of column ``name`` of ``table`` (quoted), or ``default`` when the export's
    table lacks it (older or newer schemas)."""
    return f'"{name}"' if db.has_column(table, name) else default


def with_pid(frame: pd.DataFrame, source: str, with_tid: bool = True) -> pd.DataFrame:
    """``frame`` with ``pid`` (and ``tid`` from a ``global_tid`` source, when ``with_tid``)
    decoded from its ``source`` column (nsys' globalPid/globalTid), in place."""
    frame["pid"] = table_schema.decode_pid(frame[source].to_numpy(dtype=np.int64))
    if source == "global_tid" and with_tid:
        frame["tid"] = table_schema.decode_tid(frame[source].to_numpy(dtype=np.int64))
    return frame
