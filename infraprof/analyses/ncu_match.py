"""Which nsys kernel an Nsight Compute launch is: by full name, short name, short name plus
grid/block shape, or (OpenACC ``<function>_<line>_gpu`` names) the nearest line of the same
function. :func:`nsys_kernels` summarises the trace's kernels once for the matching."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from infraprof.analyses.summary import kernel_summary
from infraprof.model import Trace

_OPENACC = re.compile(r"^(.*)_(\d+)_gpu$")


@dataclass(frozen=True)
class NsysKernel:
    name: str
    short_name: str
    total_ns: int
    count: int
    shapes: frozenset[tuple[int, ...]]


def nsys_kernels(trace: Trace, summary: pd.DataFrame | None = None) -> list[NsysKernel]:
    """Per kernel name of :func:`kernel_summary` (``summary``: that table when already
    computed, e.g. ``ctx.kernel_summary``), with its distinct grid/block shapes."""
    if summary is None:
        summary = kernel_summary(trace)
    k = trace.kernels
    dims = ["grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z"]
    grouped: dict[str, set[tuple[int, ...]]] = {}
    if len(k):  # distinct (name, shape) rows first: one pass instead of one per name
        for name, *shape in k[["name", *dims]].drop_duplicates().itertuples(index=False):
            if not pd.isna(name):  # groupby drops null names
                grouped.setdefault(str(name), set()).add(tuple(int(v) for v in shape))
    shapes = {name: frozenset(s) for name, s in grouped.items()}
    return [
        NsysKernel(str(r["name"]), str(r["short_name"]), int(r["total_ns"]), int(r["count"]),
                    shapes.get(str(r["name"]), frozenset()))
        for r in summary.to_dict("records")
    ]


def _shape(row: pd.Series) -> tuple[int, ...] | None:
    dims = [row[c] for c in ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z")]
    if any(v is None or v is pd.NA for v in dims):
        return None
    return tuple(int(v) for v in dims)


def match_kernel(row: pd.Series, nsys: list[NsysKernel]) -> tuple[NsysKernel, str] | None:
    """The nsys kernel name an ncu launch belongs to, and how it was matched."""
    name, short = str(row["name"]), str(row["short_name"])
    exact = [k for k in nsys if k.name == name]
    if exact:
        return exact[0], "name"
    by_short = [k for k in nsys if short in (k.short_name, k.name)]
    if len(by_short) == 1:
        return by_short[0], "short name"
    if by_short:
        shape = _shape(row)
        same = [k for k in by_short if shape is not None and shape in k.shapes]
        if len(same) == 1:
            return same[0], "short name + grid/block"
        best = max(same or by_short, key=lambda k: k.total_ns)
        return best, f"short name (ambiguous: {len(same or by_short)} candidates, hottest)"
    m = _OPENACC.match(name)
    if m:
        base, line = m.group(1), int(m.group(2))
        near = []
        for k in nsys:
            km = _OPENACC.match(k.name)
            if km and km.group(1) == base:
                near.append((abs(int(km.group(2)) - line), -k.total_ns, k))
        if near:
            near.sort(key=lambda t: (t[0], t[1]))
            k = near[0][2]
            return k, f"OpenACC function, nearest line ({name} ~ {k.name})"
    return None
