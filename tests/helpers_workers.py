"""Worker tasks that die, for the multi-input crash tests: :func:`infraprof.many.run_local`
looks ``run_job`` up when it starts its workers, so a test replaces it with one of these
(importable by the ``forkserver`` workers, which share the test's ``sys.path``)."""

from __future__ import annotations

import os
import signal

from infraprof.many import Job, JobResult, run_job


def killed_on_second(job: Job) -> JobResult:
    """The second input's worker is SIGKILLed, as the out-of-memory killer does."""
    if job.index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_job(job)


def exits_on_second(job: Job) -> JobResult:
    """The second input's worker leaves with ``os._exit(3)`` (no result, no exception)."""
    if job.index == 1:
        os._exit(3)
    return run_job(job)
