"""The HTML timeline's bar merging (``ranking.timeline_view.merge_runs``) against the
straightforward form: cut at the widest idle gaps, report the widest one merged away."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.ranking.timeline_view import merge_runs


def _reference(starts: np.ndarray, ends: np.ndarray, max_bars: int
               ) -> tuple[list[tuple[int, int, int, int]], int]:
    reach = np.maximum.accumulate(ends)
    idle = starts[1:] - reach[:-1]
    if len(idle) < max_bars:
        cuts = np.arange(len(idle))
    else:
        cuts = np.sort(np.argpartition(-idle, max_bars - 2)[: max_bars - 1])
    merged = np.ones(len(idle), dtype=bool)
    merged[cuts] = False
    widest = int(idle[merged].max()) if merged.any() else 0
    bounds = [0, *(int(c) + 1 for c in cuts), len(starts)]
    runs = [(int(starts[a]), int(reach[b - 1]), a, b - a) for a, b in itertools.pairwise(bounds)]
    return runs, max(0, widest)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 20)), min_size=1, max_size=60),
       st.integers(2, 8))
def test_merge_runs_is_the_reference(ops: list[tuple[int, int]], max_bars: int) -> None:
    """Same runs and widest merged gap, with equal gaps (ties) and overlapping operations;
    the inputs are not modified."""
    starts = np.cumsum([s for s, _ in ops]).astype(np.int64)
    ends = starts + np.array([d for _, d in ops], dtype=np.int64)
    kept = (starts.copy(), ends.copy())
    assert merge_runs(starts, ends, max_bars) == _reference(starts, ends, max_bars)
    assert starts.tolist() == kept[0].tolist() and ends.tolist() == kept[1].tolist()
