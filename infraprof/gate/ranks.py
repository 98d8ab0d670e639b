"""The gate on multi-rank runs: a folder of per-rank reports (not a capture folder, not a
``capture --repeat`` folder) is one run of a job.

Its metrics are every rank's own metrics (:func:`~infraprof.gate.metrics.load_run`), named
``rank<N>:<metric>`` with ranks in the folder's name order, plus the **job's** metrics under
the plain names, so a job gates against a job exactly as a single run against a single run:

* ``step:duration`` samples: per step ``k`` (the ``k``-th step of every rank, over the steps
  every rank has), the **maximum** over ranks — a step of the job ends when its slowest rank
  ends it — and ``step:duration:p50_ns`` their median;
* every other metric every rank has: its maximum over ranks (the job is as slow as its slowest
  rank); samples other than step durations stay per rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infraprof.analyses.run_metrics import QUANTILE_STATS, RunMetrics
from infraprof.inputs.many import expand_inputs, is_capture_folder

STEP_SAMPLES = "step:duration"


def is_rank_folder(path: Path) -> bool:
    """A folder of per-rank reports: a directory that is neither a capture folder nor a
    ``capture --repeat`` folder."""
    from infraprof.capture.layout import CaptureFolder

    return path.is_dir() and not is_capture_folder(path) and not CaptureFolder(path).runs()


def job_metrics(ranks: list[RunMetrics], source: str) -> RunMetrics:
    """The job's metrics from its ranks' (module docstring)."""
    job = RunMetrics(source=source, context={**(ranks[0].context if ranks else {}),
                                             "ranks": str(len(ranks))})
    for i, run in enumerate(ranks):
        job.values.update({f"rank{i}:{k}": v for k, v in run.values.items()})
        job.samples.update({f"rank{i}:{k}": v for k, v in run.samples.items()})
    shared = set.intersection(*(set(r.values) for r in ranks)) if ranks else set()
    for key in sorted(shared):
        job.values[key] = max(r.values[key] for r in ranks)
    steps = [r.samples.get(STEP_SAMPLES) for r in ranks]
    if ranks and all(steps):
        count = min(len(s) for s in steps if s)
        per_step = np.max(np.array([s[:count] for s in steps if s], dtype=np.float64), axis=0)
        job.samples[STEP_SAMPLES] = [float(x) for x in per_step]
        job.values[f"{STEP_SAMPLES}:p50_ns"] = float(
            np.quantile(per_step, QUANTILE_STATS["p50_ns"]))
    return job


def load_job(folder: Path, step: str = "auto") -> RunMetrics:
    """One run of a multi-rank job from its folder of per-rank reports."""
    from infraprof.gate.metrics import load_run

    return job_metrics([load_run(p, step) for p in expand_inputs([folder])], str(folder))
