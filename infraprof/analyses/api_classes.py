"""Classify CUDA API and OS-runtime calls by what they do to the host thread.

Names are matched after version-suffix stripping, in runtime (``cuda*``) and driver (``cu*``)
spellings alike. Categories (see ``docs/findings.md``):

* ``sync``: the host waits for the GPU (device/context/stream/event synchronize, stream wait
  event, polling queries);
* ``memcpy``: memory copies and memsets issued from the host (blocking when synchronous or from
  pageable memory);
* ``allocation``: allocator and pinned-memory registration calls (``cudaFree`` also synchronizes);
* ``launch``: kernel and graph launches;
* ``cuda-other``: every other CUDA API call (events, streams, attributes, ...);
* OS runtime: ``host-wait`` for calls that block (file and socket I/O, polling, locks, sleeps,
  condition variables); other system calls (``mmap``, ``brk``, ...) count as ``host-cpu``.
"""

from __future__ import annotations

import re
from typing import Final

import pandas as pd

from infraprof.analyses.names import text_codes
from infraprof.tables import fill_text, text_category

SYNC_RE: Final = re.compile(
    r"(Synchronize|StreamWaitEvent|StreamWaitValue|EventQuery|StreamQuery)", re.IGNORECASE
)
MEMCPY_RE: Final = re.compile(r"^(cuda|cu)(Memcpy|Memset|MemcpyPeer|MemPrefetch)", re.IGNORECASE)
ALLOC_RE: Final = re.compile(
    r"^(cuda|cu)(Malloc|Free|HostAlloc|MemAlloc|MemFree|MallocHost|FreeHost|HostRegister|"
    r"HostUnregister|MemHostAlloc|MemHostRegister|MemHostUnregister|MallocAsync|FreeAsync|"
    r"MemAllocAsync|MemFreeAsync|MemPool|MallocManaged|MemAllocManaged|MallocPitch|"
    r"MemAllocPitch|Malloc3D|MallocArray|ArrayCreate)",
    re.IGNORECASE,
)
LAUNCH_RE: Final = re.compile(r"(LaunchKernel|LaunchCooperativeKernel|GraphLaunch|^cuLaunch|"
                              r"^cudaLaunch)", re.IGNORECASE)
OSRT_WAIT_RE: Final = re.compile(
    r"^(poll|ppoll|select|pselect|epoll_wait|epoll_pwait|read|pread|pread64|readv|preadv|recv|"
    r"recvfrom|recvmsg|recvmmsg|accept|accept4|connect|wait|waitpid|waitid|wait4|"
    r"pthread_cond_wait|pthread_cond_timedwait|pthread_cond_clockwait|pthread_mutex_lock|"
    r"pthread_mutex_timedlock|pthread_rwlock_.*lock|pthread_join|pthread_barrier_wait|"
    r"pthread_spin_lock|sem_wait|sem_timedwait|sem_clockwait|futex|nanosleep|clock_nanosleep|"
    r"usleep|sleep|msgrcv|mq_receive|mq_timedreceive|fsync|fdatasync|sync_file_range|"
    r"open|open64|openat|fopen|fopen64|fread|fgets|getc|flock|lockf|fcntl|ioctl|sendfile|"
    r"write|pwrite|pwrite64|writev|pwritev|fwrite|fflush|fclose|close|truncate|ftruncate|"
    r"send|sendto|sendmsg|sendmmsg|shutdown|unlink|rename|mkdir|stat|fstat|lstat|statx|"
    r"splice|sigwait|sigtimedwait|sigsuspend|pause)$"
)
SYNC_MEMCPY_EXEMPT_BYTES: Final = 64000


def api_category(name: str) -> str:
    """Category of a CUDA API call name (suffix already stripped)."""
    if SYNC_RE.search(name):
        return "sync"
    if ALLOC_RE.search(name):
        return "allocation"
    if MEMCPY_RE.search(name):
        return "memcpy"
    if LAUNCH_RE.search(name):
        return "launch"
    return "cuda-other"


def osrt_category(name: str) -> str:
    """``host-wait`` for blocking OS calls, else ``host-cpu``."""
    return "host-wait" if OSRT_WAIT_RE.match(name) else "host-cpu"


def is_blocking_copy_api(name: str) -> bool:
    """Synchronous (non-``Async``) host copy/memset API name."""
    return bool(MEMCPY_RE.search(name)) and "async" not in name.lower()


def api_categories(names: pd.Series) -> pd.Series:
    """:func:`api_category` of every name (classified once per distinct name), as a
    Categorical (:func:`~infraprof.tables.text_category`: comparing it with a category
    compares integer codes)."""
    # integer codes of the names (no hashing of every row's text, no mapped copy of it)
    codes, uniques = text_codes(fill_text(names, ""))
    return text_category(codes, [api_category(str(name)) for name in uniques], names.index)
