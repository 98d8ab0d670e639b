"""``shared_value``: a cached property that two threads asking at once compute once.

The analysis context and the trace compute their derived tables on first use and keep them
(:class:`functools.cached_property`). When two analyses run side by side
(:mod:`infraprof.analyses.lanes`), both may ask for the same table at once: Python 3.12 and
later compute it twice then (twice the CPU time and, until one copy is dropped, twice the
memory), 3.11 and earlier hold one lock per property across all instances. Here one lock
per property guards the computation: the second caller waits and takes the first one's
value. A value dropped meanwhile (``__dict__.pop``, as ``AnalysisContext.release`` does) is
computed again by the next caller. The properties' computations depend on each other
without cycles (a cycle would recurse forever even on one thread), so the locks cannot
deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
_MISSING: Any = object()


class shared_value(cached_property[T], Generic[T]):
    """:class:`functools.cached_property` computed under a per-property lock (module
    docstring); ``isinstance(..., cached_property)`` holds."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        super().__init__(func)
        self._guard = threading.RLock()

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> shared_value[T]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type[Any] | None = None
                ) -> shared_value[T] | T:
        if instance is None:
            return self
        held = instance.__dict__
        name = self.attrname or self.func.__name__
        value = held.get(name, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[no-any-return]
        with self._guard:
            value = held.get(name, _MISSING)
            if value is _MISSING:
                value = self.func(instance)
                held[name] = value
        return value  # type: ignore[no-any-return]
