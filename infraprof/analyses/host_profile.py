"""The host CPU profile: where the host's CPU time went, for every capture.

Source: the py-spy profile when there is one (Python frames), else nsys CPU sampling (native
frames, system frames skipped as in :mod:`~infraprof.analyses.native_frames`). Per thread
(busiest first): the top functions by *self* samples (the leaf frame; for native stacks the
leaf-most meaningful frame) and by *inclusive* samples (every distinct frame of a stack counts
once). infraprof's own frames never appear: stacks of its capture bootstrap (sync pulses) are
dropped, and importlib and NVTX-marker frames are removed from the others.

The *hottest function* (py-spy) is the deepest frame that at least half of the samples pass
through, descending the call tree from the root; when that frame encloses ≥ 95 % of them
(``<module>``, ``main``), the largest frame below it is named instead. For nsys samples the
native chain rule (:func:`~infraprof.analyses.native_frames.summarize_pool`) names it.

The OS-runtime wait summary lists blocking OS calls (``host-wait`` calls: reads, polls,
sleeps, lock waits) by total time.

On a trace without GPU activity, the finding ``host.profile`` names the hottest function
("71 % of samples in `hidden_batch_loader()` app.py:4").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from infraprof.analyses.api_classes import OSRT_WAIT_RE
from infraprof.analyses.base import Analysis, Output
from infraprof.analyses.findings import Finding, info_finding
from infraprof.analyses.host_frames import ENCLOSING_SHARE, Frame, summarize_stacks
from infraprof.analyses.native_frames import chain_keys, summarize_pool
from infraprof.distinct import distinct
from infraprof.model.clock import AlignedPyspy

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

_BOOTSTRAP = "infraprof/capture/bootstrap.py"
_HIDDEN_FILE = r"(?:<frozen importlib\._bootstrap(?:_external)?>|/importlib/|/nvtx/|^nvtx/)"


@dataclass(frozen=True)
class HostProfileParams:
    """``top``: functions listed per thread and table (default 10); ``threads``: threads
    listed (default 5)."""

    top: int = 10
    threads: int = 5


@dataclass(frozen=True)
class HostProfile:
    """What the report shows as the host CPU profile (see the module docstring)."""

    source: str | None
    samples: int
    threads: list[dict[str, Any]] = field(default_factory=list)
    hottest: dict[str, Any] | None = None
    osrt_waits: list[dict[str, Any]] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "samples": self.samples, "hottest": self.hottest,
                "threads": self.threads, "osrt_waits": self.osrt_waits,
                "notes": list(self.notes)}


def _label(function: str, file: str, line: int | None = None) -> str:
    """``fn() file.py:12``; a package's ``__init__.py`` keeps its folder (``pkg/__init__.py``)."""
    path = PurePath(str(file).replace("\\", "/"))
    name = f"{path.parent.name}/{path.name}" if path.name == "__init__.py" else path.name
    where = f" {name}" if file else ""
    return f"{function}(){where}" + (f":{line}" if line is not None and file else "")


def pyspy_stacks(pyspy: AlignedPyspy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(counts, frames)`` of the py-spy aggregate without infraprof's own frames: counts
    ``tid, stack_id, count``; frames ``stack_id, depth, function, file, line`` (root first)."""
    frames = pyspy.profile.frames
    files = frames["file"].astype(str).str.replace("\\", "/", regex=False)
    pulse = frames.loc[files.str.endswith(_BOOTSTRAP), "stack_id"].unique()
    keep = ~files.str.contains(_HIDDEN_FILE, regex=True) & ~frames["stack_id"].isin(pulse)
    counts = pyspy.profile.aggregate
    return counts[~counts["stack_id"].isin(pulse)], frames[keep.to_numpy(bool)]


def _top(rows: pd.DataFrame, total: int, top: int) -> list[dict[str, Any]]:
    return [{"frame": str(r.label), "samples": int(r.samples),
             "share": round(int(r.samples) / (total or 1), 4)}
            for r in rows.sort_values(["samples", "label"], ascending=[False, True])
            .head(top).itertuples()]


def _pyspy_profile(pyspy: AlignedPyspy, names: dict[int, str], p: HostProfileParams
                   ) -> HostProfile:
    counts, frames = pyspy_stacks(pyspy)
    labels = frames.assign(label=[_label(f, p_, n) for f, p_, n in zip(
        frames["function"], frames["file"], frames["line"], strict=True)],
        key=frames["function"] + "\0" + frames["file"])
    leaf = labels.sort_values("depth").drop_duplicates("stack_id", keep="last")
    leaf = leaf.assign(key=leaf["key"] + "\0" + leaf["line"].astype(str))
    incl = labels.drop_duplicates(["stack_id", "key"])
    incl = incl.assign(label=[_label(f, p_) for f, p_ in zip(
        incl["function"], incl["file"], strict=True)])
    threads = []
    by_tid = counts.groupby("tid")["count"].sum().sort_values(ascending=False)
    for tid, n in by_tid.head(p.threads).items():
        mine = counts[counts["tid"] == tid].groupby("stack_id")["count"].sum()
        self_rows = leaf.join(mine.rename("samples"), on="stack_id", how="inner")
        incl_rows = incl.join(mine.rename("samples"), on="stack_id", how="inner")
        threads.append({
            "tid": int(str(tid)), "name": names.get(int(str(tid))), "samples": int(n),
            "self": _top(self_rows.groupby(["key", "label"], as_index=False)["samples"].sum(),
                         int(n), p.top),
            "inclusive": _top(incl_rows.groupby(["key", "label"], as_index=False)[
                "samples"].sum(), int(n), p.top)})
    total = int(counts["count"].sum())
    stacks: dict[int, list[Frame]] = {}
    for sid, f, p_, n in frames.sort_values(["stack_id", "depth"])[
            ["stack_id", "function", "file", "line"]].itertuples(index=False):
        stacks.setdefault(int(sid), []).append((str(f), str(p_), int(n)))
    pooled: Counter[tuple[Frame, ...]] = Counter()
    for sid, n in counts.groupby("stack_id")["count"].sum().items():
        pooled[tuple(stacks.get(int(str(sid)), ()))] += int(n)
    return HostProfile("py-spy", total, threads, hottest_python(pooled), notes=pyspy.notes)


def hottest_python(counts: Counter[tuple[Frame, ...]]) -> dict[str, Any] | None:
    """The deepest frame at least half of the samples pass through (descending the call tree
    from the root); when it encloses ≥ 95 % of them (``<module>``, ``main``), the largest
    frame below it instead (:func:`summarize_stacks`)."""
    total = sum(counts.values())
    members = list(counts.items())
    node: tuple[Frame, int] | None = None
    depth = 0
    while True:
        children: Counter[tuple[str, str]] = Counter()
        for stack, n in members:
            if len(stack) > depth:
                children[stack[depth][:2]] += n
        if not children or children.most_common(1)[0][1] < 0.5 * total:
            break
        key = children.most_common(1)[0][0]
        members = [(st, n) for st, n in members if len(st) > depth and st[depth][:2] == key]
        lines: Counter[Frame] = Counter()
        for st, n in members:
            lines[st[depth]] += n
        node = (lines.most_common(1)[0][0], children[key])
        depth += 1
    if node is not None and node[1] < ENCLOSING_SHARE * total:
        (function, file, line), n = node
        return {"frame": _label(function, file, line), "share": round(n / total, 4),
                "samples": n}
    _, shares, _ = summarize_stacks(counts, 1)
    return None if not shares else {
        "frame": _label(shares[0].function, shares[0].file, shares[0].line),
        "share": round(shares[0].share, 4), "samples": shares[0].samples}


def _nsys_profile(ctx: AnalysisContext, p: HostProfileParams) -> HostProfile:
    samples = ctx.trace.cpu_samples.assign(callchain_id=chain_keys(
        ctx.trace.cpu_samples["callchain_id"], "sampling"))
    stacks = ctx.native_stacks
    by_tid = samples.groupby("global_tid").size().sort_values(ascending=False).head(p.threads)
    mine = samples[samples["global_tid"].isin(by_tid.index)].groupby(
        ["global_tid", "callchain_id"]).size().rename("samples").reset_index()
    fr = stacks.frames_of(distinct(mine["callchain_id"].to_numpy(np.int64)))
    labels = fr.drop_duplicates("code").set_index("code")["label"]
    leaf = fr[["callchain_id", "code"]].drop_duplicates("callchain_id").merge(
        mine, on="callchain_id")
    incl = fr[["callchain_id", "code"]].drop_duplicates().merge(mine, on="callchain_id")
    self_n = leaf.groupby(["global_tid", "code"], as_index=False)["samples"].sum()
    incl_n = incl.groupby(["global_tid", "code"], as_index=False)["samples"].sum()
    self_n["label"] = self_n["code"].map(labels)
    incl_n["label"] = incl_n["code"].map(labels)
    tids = samples.drop_duplicates("global_tid").set_index("global_tid")["tid"]
    threads = [{
        "tid": int(tids[gtid]), "name": ctx.thread_names.get(int(str(gtid))), "samples": int(n),
        "self": _top(self_n[self_n["global_tid"] == gtid], int(n), p.top),
        "inclusive": _top(incl_n[incl_n["global_tid"] == gtid], int(n), p.top)}
        for gtid, n in by_tid.items()]
    named = summarize_pool(samples[["callchain_id"]].assign(weight=1.0), stacks).named
    hottest = None if named is None else {
        "frame": f"{named['function']} ({named['module']})",
        "share": named["share_of_idle"], "samples": named["samples"]}
    return HostProfile("nsys-sampling", len(samples), threads, hottest)


def osrt_waits(osrt: pd.DataFrame, top: int = 10) -> list[dict[str, Any]]:
    """Blocking OS-runtime calls by total time: ``name, count, total_ns``."""
    names = osrt["name"].astype(str)
    blocking = {n: bool(OSRT_WAIT_RE.match(n)) for n in pd.unique(names)}
    waits = osrt[names.map(blocking).astype(bool).to_numpy()]
    if waits.empty:
        return []
    g = (waits["end_ns"] - waits["start_ns"]).groupby(waits["name"]).agg(["count", "sum"])
    g = g.sort_values("sum", ascending=False).head(top)
    return [{"name": str(n), "count": int(c), "total_ns": int(s)}
            for n, c, s in zip(g.index, g["count"], g["sum"], strict=True)]


def host_profile(ctx: AnalysisContext, params: HostProfileParams) -> HostProfile:
    """The profile from py-spy when present, else from nsys samples (module docstring)."""
    waits = osrt_waits(ctx.trace.osrt, params.top)
    if ctx.pyspy is not None and not ctx.pyspy.profile.aggregate.empty:
        names = {int(t): str(n) for t, n in zip(ctx.pyspy.profile.threads["tid"],
                                               ctx.pyspy.profile.threads["name"], strict=True)
                 if n is not None and n == n}
        prof = _pyspy_profile(ctx.pyspy, names, params)
    elif not ctx.trace.cpu_samples.empty:
        prof = _nsys_profile(ctx, params)
    else:
        prof = HostProfile(None, 0, notes=("no CPU samples: capture with py-spy "
                                           "(`infraprof capture`) or nsys `--sample=cpu`",))
    return HostProfile(prof.source, prof.samples, prof.threads, prof.hottest, waits,
                       prof.notes)


def _finding(profile: HostProfile) -> Finding | None:
    hot = profile.hottest
    if hot is None:
        return None
    title = f"{100 * hot['share']:.0f} % of samples in `{hot['frame']}`"
    return info_finding(
        "host.profile", "host-cpu", title,
        {"frame": hot["frame"], "share": hot["share"], "samples": hot["samples"],
         "total_samples": profile.samples, "source": profile.source},
        "No GPU work was recorded: the host's own code is the cost. Speed up the named "
        "function (or move it off the critical path) and profile it further.")


def _run(ctx: AnalysisContext, params: HostProfileParams) -> Output:
    profile = host_profile(ctx, params)
    finding = None if ctx.trace.has_gpu_activity else _finding(profile)
    return Output(findings=[finding] if finding else [], tables={"profile": profile})


HOST_PROFILE = Analysis(
    id="host_profile", summary="host CPU profile (py-spy or nsys samples): top functions "
    "by self and inclusive time per thread, OS-runtime waits",
    finding_ids=("host.profile",), params_type=HostProfileParams, run=_run)
