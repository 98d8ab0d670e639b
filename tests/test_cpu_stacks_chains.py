"""``cpu_stacks._chains`` (distinct frames cleaned once, chains as runs of one sorted table)
equals the straightforward per-chain construction it replaced, on a real trace's callchains
and on generated ones (null symbols and modules, whitespace, several sources); and
``Trace.thread_name`` equals a scan of the threads table."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from helpers_reports import MINIWEATHER, report_for
from helpers_traces import TraceFiles
from hypothesis import given, settings
from hypothesis import strategies as st

from infraprof.analyses.cpu_stacks import _chains
from infraprof.tables import plain_text

_SPACE = re.compile(r"\s+")


def _reference(frames: pd.DataFrame) -> dict[int, tuple[tuple[str, str], ...]]:
    def clean(text: str) -> str:
        return _SPACE.sub(" ", text).strip() or "?"

    f = frames[frames["source"] == "sampling"].sort_values(["callchain_id", "depth"],
                                                           ascending=[True, False])
    f = f.assign(symbol=plain_text(f["symbol"]), module=plain_text(f["module"]))
    return {int(str(cid)): tuple((clean(str(s if s is not None else m)), clean(str(m or "")))
                                 for s, m in zip(g["symbol"], g["module"], strict=True))
            for cid, g in f.groupby("callchain_id", sort=False)}


def test_real_callchains(trace_files: TraceFiles) -> None:
    trace = report_for(trace_files.path(MINIWEATHER)).trace
    assert len(trace.callchains)
    assert _chains(trace.callchains) == _reference(trace.callchains)
    wanted = trace.cpu_samples["callchain_id"].unique()[:50]
    expected = {cid: chain for cid, chain in _reference(trace.callchains).items()
                if cid in set(wanted.tolist())}
    assert _chains(trace.callchains, wanted) == expected
    for gtid, name in zip(trace.threads["global_tid"], trace.threads["name"], strict=True):
        rows = trace.threads.loc[trace.threads["global_tid"] == gtid, "name"]
        assert trace.thread_name(gtid) == str(rows.iloc[0])
        assert isinstance(name, str) or name is None
    assert trace.thread_name(-12345) is None


NAMES = st.one_of(st.none(), st.sampled_from(["f", " f ", "g\tx", "", "  ", "h  y", "f"]))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["sampling", "sampling", "cuda"]), st.integers(0, 4),
                          st.integers(0, 3), NAMES, NAMES), max_size=25))
def test_generated_callchains(rows: list[tuple[str, int, int, str | None, str | None]]) -> None:
    frames = pd.DataFrame(rows, columns=["source", "callchain_id", "depth", "symbol", "module"])
    frames = frames.astype({"callchain_id": "int64", "depth": "int64", "symbol": "category",
                            "module": "category"})
    assert _chains(frames) == _reference(frames)


@pytest.mark.parametrize("wanted", [[], [1, 3]])
def test_wanted_subset(wanted: list[int]) -> None:
    frames = pd.DataFrame({"source": ["sampling"] * 4, "callchain_id": [1, 1, 2, 3],
                           "depth": [0, 1, 0, 0], "symbol": ["a", "b", "c", None],
                           "module": ["m", None, "n", "o"]}).astype(
        {"symbol": "category", "module": "category"})
    full = _reference(frames)
    assert _chains(frames, wanted) == {k: v for k, v in full.items() if k in wanted}
