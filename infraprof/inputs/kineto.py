"""PyTorch profiler (Kineto) traces as a :class:`~infraprof.model.trace.Trace`, with their
Python function events as a profile on the trace's own timeline (used as py-spy samples are).

The reader is :mod:`infraprof.readers.kineto` (streamed, gzip included, truncated files read to
the last complete event with a warning); ``docs/kineto.md`` says how events map onto the model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from infraprof.model.clock import AlignedPyspy, Alignment, NsysClock, PyspyClock
from infraprof.model.trace import Trace, TraceMeta
from infraprof.readers import kineto
from infraprof.readers.kineto_python import python_profile


def load_kineto(path: Path, progress: Callable[[str], None] | None = None
                ) -> tuple[Trace, AlignedPyspy | None]:
    """The trace of Kineto file ``path`` and its Python frames (None without
    ``python_function`` events)."""
    tables = kineto.read_kineto(path, progress)
    window = tables.window or (None, None)
    schema = tables.header.get("schemaVersion")
    meta = TraceMeta(
        source=str(path), sqlite_path=str(path), nsys_version=None,
        schema_version=str(schema) if schema is not None else None,
        session_start_utc_ns=tables.session_start_utc_ns, analysis_start_ns=window[0],
        analysis_end_ns=window[1], capture_command=None, input_format="kineto",
        rank=tables.rank, world_size=tables.world_size, warnings=tuple(tables.warnings),
    )
    trace = Trace(meta=meta, data_quality=(), **tables.frames)
    return trace, _python(tables, trace)


def _python(tables: kineto.KinetoTables, trace: Trace) -> AlignedPyspy | None:
    """``python_function`` events as samples on the trace timeline: same clock, so the
    alignment error is the sampling period alone."""
    names = {int(t): str(n) for t, n in zip(trace.threads["tid"], trace.threads["name"],
                                            strict=True)}
    profile = python_profile(tables.python_events, names, str(tables.path))
    if profile is None:
        return None
    period = round(1e9 / (profile.rate_hz or 1.0))
    alignment = Alignment(NsysClock(offset_ns=0, method="kineto-timeline", error_ns=0),
                          PyspyClock(offset_ns=0, method="kineto-python-events",
                                     error_ns=period))
    return AlignedPyspy(profile, alignment, profile.samples, profile.notes)
