"""The vectorised protobuf encoder against the one-message encoder and an independent
decoder, and the nesting check against a stack walk (hypothesis)."""

from __future__ import annotations

import numpy as np
from helpers_protobuf import read_varint, walk
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.render import protobuf_wire as wire
from infraprof.render.timeline_nesting import first_nesting, nesting_lanes, nests

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


@given(st.lists(INT64, min_size=1, max_size=50))
def test_varint_columns_match_single_varints(values: list[int]) -> None:
    data, used = wire.varint_matrix(np.array(values, dtype=np.int64))
    for row, size, value in zip(data, used.tolist(), values, strict=True):
        one = wire.varint(value)
        assert bytes(row[:size]) == one
        assert read_varint(one, 0) == (value & ((1 << 64) - 1), len(one))


@given(st.lists(st.tuples(st.integers(0, 1 << 40), st.booleans(),
                          st.text(max_size=20)), min_size=1, max_size=30))
def test_rows_encode_as_single_messages(rows: list[tuple[int, bool, str]]) -> None:
    n = len(rows)
    values = np.array([r[0] for r in rows], dtype=np.int64)
    present = np.array([r[1] for r in rows], dtype=bool)
    strings = sorted({r[2] for r in rows})
    codes = np.array([strings.index(r[2]) for r in rows], dtype=np.int64)
    inner = wire.Rows.empty(n).add(
        wire.varints(1, values), wire.fixed64s(2, values).only(present),
        wire.lookup(codes, [wire.string_field(3, s) for s in strings]))
    got = wire.message(7, inner).tobytes()
    want = b"".join(wire.bytes_field(7, wire.varint_field(1, v)
                                     + (wire.tag(2, 1) + v.to_bytes(8, "little") if p else b"")
                                     + wire.string_field(3, s)) for v, p, s in rows)
    assert got == want
    decoded = [walk(m) for _, _, m in walk(got)]
    assert [d[0][2] for d in decoded] == [r[0] for r in rows]


SPANS = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 10)), max_size=40)


def _sorted(spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    ordered = sorted(((s, s + d) for s, d in spans), key=lambda x: (x[0], -x[1]))
    return (np.array([s for s, _ in ordered], dtype=np.int64),
            np.array([e for _, e in ordered], dtype=np.int64))


@settings(max_examples=300)
@given(SPANS)
def test_nests_agrees_with_a_stack_walk(spans: list[tuple[int, int]]) -> None:
    start, end = _sorted(spans)
    assert nests(start, end) == bool(first_nesting(start, end).all())


@given(SPANS)
def test_every_lane_nests(spans: list[tuple[int, int]]) -> None:
    start, end = _sorted(spans)
    lanes = nesting_lanes(start, end)
    for lane in np.unique(lanes):
        assert first_nesting(start[lanes == lane], end[lanes == lane]).all()
    if len(start):
        assert (lanes == 0).any()
