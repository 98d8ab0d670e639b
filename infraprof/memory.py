"""Giving freed memory back to the operating system between analysis steps, and reusing it
within a step.

The analyses allocate and free arrays of tens of MB (8 MB per int64 column at 1 M rows).
glibc's allocator serves most of them from its heap, whose dynamic mmap threshold grows with
each large free, and keeps the freed pages: the process's resident size then stays at its
high-water mark and every later step's temporaries come on top of it. ``malloc_trim(0)``
returns the free pages of the heap (measured at 1 M kernels: ~60 MB less resident after the
load and after each analysis, a few ms each). Elsewhere than glibc this is a no-op.

Arrays of 32 MB and more (4 M int64 values: every column of a 10 M-kernel trace) are above
glibc's largest mmap threshold, so each one is a fresh ``mmap`` that is unmapped when freed:
the next one of that size faults in new zeroed pages. :func:`heap_allocations` turns mmap off
(``mallopt(M_MMAP_MAX, 0)``) while infraprof reads and analyses, so large blocks come from
the heap and a freed block is reused by the next; :func:`release_free_memory` still returns
the heap's free pages between steps. Measured at 10 M kernels (``docs/performance.md``,
"Round 7"): 64.1 → 49.8–50.3 s wall, system time 25.7 → 15.0–16.7 s, peak resident
+20–130 MB (+0.5–3.3 %); no measurable change at 1 M.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

_M_MMAP_MAX = -4  # mallopt parameter: most blocks served by mmap at once
_DEFAULT_MMAP_MAX = 65536  # glibc's default of it
_heap_users = 0
_heap_lock = threading.Lock()


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library (found once: ``find_library`` may run ``ldconfig``), None where it is
    not Linux or cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    """``malloc_trim`` or ``mallopt`` of the C library, None where it has none (not Linux,
    or not glibc: musl has neither)."""
    libc = _libc()
    function: Callable[..., int] | None = getattr(libc, name, None) if libc else None
    return function


def release_free_memory() -> None:
    """Return the allocator's free heap pages to the operating system (glibc only)."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def between_steps() -> None:
    """Called between two analysis steps: :func:`release_free_memory`, except while
    :func:`heap_allocations` is on. Then the blocks a step freed are the next step's: returning
    their pages makes the next step fault them in again (at 10 M kernels, system time
    10.3–11.0 → 7.4–8.0 s), while keeping them raised the peak by 0.4–0.9 % (10 M) and 1 %
    (1 M; ``docs/performance.md``, "Round 7")."""
    if _heap_users == 0:
        release_free_memory()


@contextmanager
def heap_allocations() -> Iterator[None]:
    """While the block runs, large allocations come from the heap instead of fresh mmaps
    (see the module docstring); when the outermost block ends, glibc's default is restored
    and the heap's free pages are returned (a library caller keeps only what it holds).
    A no-op elsewhere than glibc."""
    global _heap_users
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        yield
        return
    with _heap_lock:
        if _heap_users == 0:
            mallopt(_M_MMAP_MAX, 0)
        _heap_users += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                release_free_memory()  # what the block freed, back to the OS
