"""Load any trace input: an nsys export, report or capture folder, or a PyTorch profiler
(Kineto) trace, detected by content (:func:`~infraprof.inputs.detect.detect`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infraprof.inputs import nsys
from infraprof.inputs.detect import InputKind, detect
from infraprof.inputs.kineto import load_kineto
from infraprof.model.clock import AlignedPyspy
from infraprof.model.trace import Trace


@dataclass(frozen=True)
class LoadedInput:
    """A loaded trace and, for a Kineto trace recorded ``with_stack=True``, its Python
    function events as a profile on the trace's own timeline (used as py-spy samples are)."""

    trace: Trace
    python: AlignedPyspy | None = None


def load_input(path: Path, progress: Callable[[str], None] | None = None,
               use_cache: bool = True, with_callchains: bool = True,
               all_columns: bool = True) -> LoadedInput:
    """:func:`load_trace` plus the Python frames a Kineto trace carries. ``InputError``
    (exit 3) for anything that is not a trace, ``ToolError`` (exit 4) when nsys fails.
    ``all_columns=False``: an nsys export's tables without the columns no analysis reads."""
    if not path.is_dir() and detect(path) is InputKind.KINETO:
        return LoadedInput(*load_kineto(path, progress))
    return LoadedInput(nsys.load_trace(path, progress, use_cache, with_callchains,
                                       all_columns))


def load_trace(path: Path, progress: Callable[[str], None] | None = None,
               use_cache: bool = True, with_callchains: bool = True,
               all_columns: bool = True) -> Trace:
    """Load ``path`` into a Trace (``use_cache``: nsys exports through the columnar cache;
    ``with_callchains=False`` leaves ``Trace.callchains`` empty; ``all_columns=False``
    leaves out the columns no analysis reads)."""
    return load_input(path, progress, use_cache, with_callchains, all_columns).trace
