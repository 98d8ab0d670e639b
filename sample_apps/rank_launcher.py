"""CPU-only multi-process sample: a launcher that starts ``--ranks`` Python workers, each with
``RANK``/``WORLD_SIZE`` in its environment (as ``torchrun`` does), and waits for them.

Each worker runs ``--steps`` NVTX ``step`` ranges, each holding a ``compute`` range of
``COMPUTE_S`` seconds of pure-Python work; rank ``--slow-rank`` (default 1) computes
``SLOW_FACTOR`` times longer. The launcher itself emits no NVTX, so a trace of the whole job holds
exactly one process with NVTX per rank.

Requires ``nvtx==0.2.11`` when captured with nsys 2022.4 (0.2.12-0.2.17 lose every event).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

COMPUTE_S = 0.010
SLOW_FACTOR = 2.0


def worker(steps: int, slow_rank: int) -> int:
    """One rank: ``steps`` NVTX ``step`` ranges around a ``compute`` range."""
    import nvtx
    from stall_app import _spin  # the busy loop of the single-process sample (same folder)

    rank = int(os.environ["RANK"])
    seconds = COMPUTE_S * (SLOW_FACTOR if rank == slow_rank else 1.0)
    checksum = 0
    for _ in range(steps):
        nvtx.push_range("step")
        nvtx.push_range("compute")
        checksum ^= _spin(seconds)
        nvtx.pop_range()
        nvtx.pop_range()
    print(f"rank {rank}: pid {os.getpid()}, {steps} steps, checksum {checksum:08x}")
    return 0


def launch(ranks: int, steps: int, slow_rank: int) -> int:
    """Start ``ranks`` workers with ``RANK=0..ranks-1`` and return the worst exit code."""
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(ranks))
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", "--steps", str(steps),
             "--slow-rank", str(slow_rank)], env=env))
    return max(p.wait() for p in procs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="workers to start (default 2)")
    parser.add_argument("--steps", type=int, default=6, help="steps per worker (default 6)")
    parser.add_argument("--slow-rank", type=int, default=1, help="the slower rank (default 1)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.steps, args.slow_rank)
    return launch(args.ranks, args.steps, args.slow_rank)


if __name__ == "__main__":
    raise SystemExit(main())
