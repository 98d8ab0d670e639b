"""The normalized, typed trace model (integer ns, units in column names)."""

from infraprof.model.load import load_trace
from infraprof.model.trace import Trace, TraceMeta

__all__ = ["Trace", "TraceMeta", "load_trace"]
