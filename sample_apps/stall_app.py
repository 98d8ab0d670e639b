"""CPU-only sample app with a deliberate data-loading stall, annotated with NVTX.

Each of ``--steps`` iterations is an NVTX push/pop range ``step`` containing ``load_batch``
(a 30 ms sleep followed by ~10 ms of pure-Python work in ``collate()``) and ``compute`` (a ~20 ms
busy loop in ``compute_step()``). At start-up the app emits three NVTX marks
``infraprof-clock mono_ns=<CLOCK_MONOTONIC ns>`` 5 ms apart so a trace can be anchored to
CLOCK_MONOTONIC.

Requires ``nvtx==0.2.11`` when captured with nsys 2022.4 (0.2.12-0.2.17 lose every event).
"""

from __future__ import annotations

import argparse
import time

import nvtx

LOAD_SLEEP_S = 0.03
COLLATE_S = 0.010
COMPUTE_S = 0.020
CLOCK_MARKS = 3
CLOCK_MARK_SPACING_S = 0.005


def _spin(seconds: float) -> int:
    """Burn CPU in pure Python for ``seconds``; return a checksum so the work is not elided."""
    deadline = time.perf_counter() + seconds
    acc = 0
    while time.perf_counter() < deadline:
        for i in range(200):
            acc = (acc * 31 + i) & 0xFFFFFFFF
    return acc


def emit_clock_anchors(count: int = CLOCK_MARKS, spacing_s: float = CLOCK_MARK_SPACING_S) -> None:
    """Emit NVTX marks carrying the CLOCK_MONOTONIC time at which they were emitted."""
    for i in range(count):
        if i:
            time.sleep(spacing_s)
        mono_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        nvtx.mark(message=f"infraprof-clock mono_ns={mono_ns}")


def collate(batch: list[int]) -> int:
    """Pure-Python collation work (~10 ms)."""
    return _spin(COLLATE_S) ^ len(batch)


def load_batch(step: int) -> int:
    """Slow data loading: blocking I/O stand-in plus CPU collation."""
    time.sleep(LOAD_SLEEP_S)
    return collate(list(range(step, step + 64)))


def compute_step(batch: int) -> int:
    """Stand-in for the model step (~20 ms of CPU)."""
    return _spin(COMPUTE_S) ^ batch


def run(steps: int) -> int:
    emit_clock_anchors()
    checksum = 0
    for step in range(steps):
        nvtx.push_range("step")
        nvtx.push_range("load_batch")
        batch = load_batch(step)
        nvtx.pop_range()
        nvtx.push_range("compute")
        checksum ^= compute_step(batch)
        nvtx.pop_range()
        nvtx.pop_range()
    return checksum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="number of steps (default 12)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    checksum = run(args.steps)
    print(f"stall_app: {args.steps} steps, checksum {checksum:08x}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
