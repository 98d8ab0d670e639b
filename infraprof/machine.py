"""What the machine gives this process: the CPUs it may run on and the memory available now.

One definition for the reader's second thread (``readers/arrow_sqlite.py``), the analyses'
second lane (``analyses/lanes.py``) and the worker pool of several inputs (``many.py``).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)


def available_bytes() -> int | None:
    """Memory available now (``/proc/meminfo`` ``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
