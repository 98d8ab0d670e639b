#!/usr/bin/env python3
"""Measure how well py-spy samples line up with the nsys timeline on the sample app.

Captures ``sample_apps/stall_app.py`` with ``infraprof capture`` (real nsys + py-spy; or reuse
``--folder``), then prints:

1. the alignment error the capture estimated from its sync pulses (what ``analyze`` uses);
2. an independent check: for every NVTX ``compute`` range start (nsys time), the first aligned
   py-spy sample in ``compute_step`` (signed difference, sample minus NVTX), and likewise for
   ``load_batch`` starts. The sampling period bounds the resolution.

Timing numbers are printed, never asserted (the machine's load changes them).
Usage: ``.venv/bin/python scripts/bench_alignment.py [--steps 30] [--rate 500] [--folder DIR]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infraprof.capture.runner import CaptureOptions, run_capture  # noqa: E402
from infraprof.cli.capture import postprocess  # noqa: E402
from infraprof.inputs import load_capture_pyspy, load_trace  # noqa: E402
from infraprof.model.clock import AlignedPyspy  # noqa: E402


def _first_entries(aligned: AlignedPyspy, tid: int, function: str) -> np.ndarray:
    """Aligned times of samples that enter ``function`` (previous sample not in it)."""
    assert aligned.samples is not None
    fr = aligned.frames
    ids = set(fr.loc[fr["function"] == function, "stack_id"].astype(int))
    s = aligned.samples[aligned.samples["tid"] == tid].sort_values("start_ns")
    inside = s["stack_id"].isin(ids).to_numpy()
    ts = s["start_ns"].to_numpy(np.int64)
    enter = inside & ~np.concatenate([[False], inside[:-1]])
    return ts[enter]


def _compare(starts: np.ndarray, entries: np.ndarray, window_ns: int) -> np.ndarray:
    out = []
    for t in starts:
        near = entries[np.abs(entries - t) <= window_ns]
        if len(near):
            out.append(int(near[np.argmin(np.abs(near - t))] - t))
    return np.asarray(out, dtype=np.int64)


def _stats(name: str, d: np.ndarray) -> None:
    if not len(d):
        print(f"  {name}: no matches")
        return
    a = np.abs(d)
    print(f"  {name}: n={len(d)}  median {np.median(d) / 1e6:+.2f} ms  "
          f"|median| {np.median(a) / 1e6:.2f} ms  p90 |d| {np.percentile(a, 90) / 1e6:.2f} ms  "
          f"max |d| {a.max() / 1e6:.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--folder", type=Path, help="analyse this existing capture instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="infraprof-bench-") as tmp:
        folder = args.folder
        if folder is None:
            folder = Path(tmp) / "capture"
            opts = CaptureOptions(
                command=(sys.executable, str(ROOT / "sample_apps" / "stall_app.py"),
                         "--steps", str(args.steps)),
                output=folder, rate_hz=args.rate, timeout_s=300)
            result = run_capture(opts, lambda m: print(f"capture: {m}", file=sys.stderr))
            postprocess(result, lambda m: print(f"capture: {m}", file=sys.stderr))
        trace = load_trace(folder)
        aligned = load_capture_pyspy(folder, trace.nvtx, trace.meta.session_start_utc_ns)
        if aligned is None or aligned.alignment is None or aligned.samples is None:
            print("no aligned py-spy samples:", aligned.notes if aligned else "no py-spy file")
            return 1
        al = aligned.alignment
        print(f"capture: {folder}  py-spy rate {aligned.profile.rate_hz:g} Hz "
              f"(period {aligned.period_ns / 1e6:.1f} ms)")
        print(f"estimated alignment error (used by analyze): {al.error_ns / 1e6:.2f} ms")
        print(f"  nsys→MONOTONIC: {al.nsys.method}, {al.nsys.marks} marks, "
              f"error {al.nsys.error_ns / 1e6:.2f} ms")
        p = al.pyspy
        print(f"  py-spy→MONOTONIC: {p.method}, {p.pulses_matched} pulses / {p.edges} edges, "
              f"residual median {(p.residual_median_ns or 0) / 1e6:.2f} ms, "
              f"max {(p.residual_max_ns or 0) / 1e6:.2f} ms")
        nvtx = trace.nvtx
        tid = int(nvtx.loc[nvtx["name"] == "step", "tid"].iloc[0])
        print("independent check against the app's NVTX ranges (sample − NVTX start):")
        for rng, func in (("compute", "compute_step"), ("load_batch", "load_batch")):
            starts = nvtx.loc[(nvtx["name"] == rng) & (nvtx["kind"] == "range"),
                              "start_ns"].to_numpy(np.int64)
            _stats(f"{rng:10s} → {func}", _compare(starts, _first_entries(aligned, tid, func),
                                                     15_000_000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
