"""The normalized, typed trace model (integer ns, units in column names); loading lives in
:mod:`infraprof.inputs`."""

from infraprof.model.trace import Trace, TraceMeta

__all__ = ["Trace", "TraceMeta"]
