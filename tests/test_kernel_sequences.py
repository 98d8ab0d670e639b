"""Repeated short-kernel sequences (issue 14): n-gram mining and kernel.tiny_kernels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from helpers_synthetic import trace
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.kernel_sequences import (
    TinyKernelParams,
    _frequent_hashes,
    _rows_of_each,
    ngram_hashes,
    ngram_hashes_by_length,
    stream_order,
)
from infraprof.ranking import build_report


def _loop(repeats: int, names: list[str], dur: int = 3_000, gap: int = 2_000,
          stream: int = 7, start: int = 0, tail: tuple[str, int] | None = ("big_gemm", 500_000)
          ) -> list[tuple[int, int, str, int]]:
    """``repeats`` × (the short ``names`` back to back, then a long kernel)."""
    out, t = [], start
    for _ in range(repeats):
        for name in names:
            out.append((t, dur, name, stream))
            t += dur + gap
        if tail:
            out.append((t, tail[1], tail[0], stream))
            t += tail[1] + gap
    return out


def test_repeated_sequence_is_found_with_its_idle_time() -> None:
    report = build_report(trace(_loop(30, ["a_kernel", "b_kernel", "c_kernel"])))
    (found,) = [f for f in report.findings if f.id == "kernel.tiny_kernels"]
    top = found.evidence["sequences"][0]
    assert top["kernels"] == ["a_kernel", "b_kernel", "c_kernel"]
    assert top["occurrences"] == 30 and top["launches"] == 90
    assert top["kernel_ns"] == 30 * 3 * 3_000
    assert top["recoverable_ns"] == 30 * 2 * 2_000  # the two gaps inside each occurrence
    # longer windows that wrap into the next loop iteration include the 500 µs kernel: not tiny
    assert all(len(s["kernels"]) == 3 or "big_gemm" not in s["kernels"]
               for s in found.evidence["sequences"])
    assert found.impact_ns == 30 * 2 * 2_000


def test_long_kernels_other_streams_and_long_gaps_break_sequences() -> None:
    few = build_report(trace(_loop(10, ["a", "b", "c"])))
    assert not any(f.id == "kernel.tiny_kernels" for f in few.findings)  # < 20 repeats
    slow = build_report(trace(_loop(30, ["a", "b", "c"], dur=20_000)))
    assert not any(f.id == "kernel.tiny_kernels" for f in slow.findings)  # not short
    gappy = build_report(trace(_loop(30, ["a", "b", "c"], gap=200_000)))
    assert not any(f.id == "kernel.tiny_kernels" for f in gappy.findings)  # stalls, not launches
    # a, b on stream 7 and c on stream 9: no length-3 window on one stream
    split = [(s, d, n, 9 if n == "c" else st) for s, d, n, st in _loop(30, ["a", "b", "c"])]
    assert not any(f.id == "kernel.tiny_kernels" for f in build_report(trace(split)).findings)


def test_idle_hidden_by_another_stream_is_not_recoverable() -> None:
    kernels = _loop(30, ["a", "b", "c"], tail=None, gap=2_000)
    span = kernels[-1][0] + kernels[-1][1]
    covered = [*kernels, (0, span, "other_stream_big", 9)]
    report = build_report(trace(covered))
    assert not any(f.id == "kernel.tiny_kernels" for f in report.findings)


@given(st.lists(st.integers(0, 3), min_size=0, max_size=60), st.integers(3, 6))
@settings(max_examples=100, deadline=None)
def test_ngram_hashes_equal_iff_windows_equal(ids: list[int], n: int) -> None:
    arr = np.array(ids, dtype=np.int64)
    valid = np.ones(arr.size, dtype=bool)
    new_stream = np.zeros(arr.size, dtype=bool)
    if arr.size:
        new_stream[0] = True
    pos, hashes = ngram_hashes(arr, valid, new_stream, n)
    assert pos.tolist() == list(range(max(0, arr.size - n + 1)))
    windows = [tuple(ids[p:p + n]) for p in pos]
    for i in range(len(windows)):
        for j in range(len(windows)):
            assert (hashes[i] == hashes[j]) == (windows[i] == windows[j])


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.booleans()), max_size=60),
       st.integers(1, 5), st.integers(0, 4))
@settings(max_examples=150, deadline=None)
def test_rolling_hashes_are_each_lengths_hashes(rows: list[tuple[int, bool, bool]],
                                                low: int, extra: int) -> None:
    """The rolling hash over all lengths gives, length by length, exactly
    :func:`ngram_hashes` (same positions, same hash values), also for lengths longer than
    the kernels."""
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    valid = np.array([r[1] for r in rows], dtype=bool)
    new_stream = np.array([r[2] for r in rows], dtype=bool)
    lengths = range(low, low + extra + 1)
    got = list(ngram_hashes_by_length(ids, valid, new_stream, lengths))
    assert [n for n, _, _ in got] == list(lengths)
    for n, pos, hashes in got:
        want_pos, want_hashes = ngram_hashes(ids, valid, new_stream, n)
        assert pos.tolist() == want_pos.tolist()
        assert hashes.tolist() == want_hashes.tolist()


def test_params_defaults_are_documented() -> None:
    p = TinyKernelParams()
    assert (p.max_kernel_ns, p.max_gap_ns, p.min_length, p.max_length, p.min_repeats) == (
        10_000, 100_000, 3, 8, 20)


@given(st.lists(st.integers(0, 6), max_size=40), st.integers(1, 4), st.integers(0, 5))
def test_frequent_hashes_are_np_uniques_by_count(values: list[int], min_count: int,
                                                 top: int) -> None:
    """``_frequent_hashes``: the hashes counted at least ``min_count`` times, in the order
    a stable sort by descending count leaves ``np.unique``'s (ascending) hashes, the first
    ``top``."""
    hashes = np.array(values, dtype=np.uint64)
    distinct, counts = np.unique(hashes, return_counts=True)
    frequent = np.flatnonzero(counts >= min_count)
    want = distinct[frequent[np.argsort(-counts[frequent], kind="stable")]][:top]
    assert _frequent_hashes(hashes, min_count, top) == want.tolist()


@given(st.lists(st.sampled_from([0, 3, 2**63 + 5, 2**64 - 1, 17]), max_size=50),
       st.lists(st.sampled_from([0, 3, 2**63 + 5, 2**64 - 1, 9]), unique=True, max_size=5))
def test_rows_of_each_are_the_rows_equal_to_each(values: list[int], wanted: list[int]
                                                 ) -> None:
    """``_rows_of_each``: per wanted value (in its order), ``flatnonzero(hashes == value)``,
    also for values absent from the hashes and above the largest one."""
    hashes = np.array(values, dtype=np.uint64)
    got = _rows_of_each(hashes, wanted)
    assert [rows.tolist() for rows in got] == [
        np.flatnonzero(hashes == np.uint64(value)).tolist() for value in wanted]


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(-3, 300), st.integers(0, 20),
                          st.sampled_from(["k_a", "k<b>", "k_c"])), max_size=40),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_stream_order_is_the_lexsorted_table(rows: list[tuple[int, int, int, str]],
                                             presorted: bool) -> None:
    """``stream_order`` gives the rows as a stable lexsort by (device, stream, start)
    does, whether the table is in that order already (its own columns, no sort) or not;
    ``name_id`` numbers the names by first appearance in that order, in the narrowest
    integer type, and the hashes of those ids equal the int64 ones'."""
    from infraprof.tables import as_text_category

    if presorted:
        rows = sorted(rows, key=lambda r: (r[0], r[1], r[2]))
    kernels = pd.DataFrame({
        "device_id": np.array([r[0] for r in rows], dtype=np.int8),
        "stream_id": np.array([r[1] for r in rows], dtype=np.int16),
        "start_ns": np.array([r[2] for r in rows], dtype=np.int64),
        "name": as_text_category(pd.Series([r[3] for r in rows], dtype=object))})
    kernels["end_ns"] = kernels["start_ns"] + 5
    order = np.lexsort((kernels["start_ns"], kernels["stream_id"], kernels["device_id"]))
    want = kernels.iloc[order].reset_index(drop=True)
    got = stream_order(kernels)
    for column in ("device_id", "stream_id", "start_ns", "end_ns"):
        assert got[column].tolist() == want[column].tolist()
        assert got[column].dtype == kernels[column].dtype
    assert got["name"].astype(object).tolist() == want["name"].astype(object).tolist()
    codes, _ = pd.factorize(want["name"].astype(object))
    assert got["name_id"].tolist() == codes.tolist()
    assert got["name_id"].dtype == np.int8
    valid = np.ones(len(rows), dtype=bool)
    cut = np.r_[True, np.zeros(max(len(rows) - 1, 0), dtype=bool)][:len(rows)]
    narrow = ngram_hashes(got["name_id"].to_numpy(), valid, cut, 2)
    wide = ngram_hashes(codes.astype(np.int64), valid, cut, 2)
    assert narrow[0].tolist() == wide[0].tolist() and narrow[1].tolist() == wide[1].tolist()
