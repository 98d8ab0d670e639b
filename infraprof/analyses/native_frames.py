"""Native host frames behind GPU idle time (nsys CPU sampling: ``--sample``).

nsys samples each thread's call stack (``trace.cpu_samples``; frames in ``trace.callchains``
with ``source == "sampling"``, ``depth`` 0 = the leaf). They are used exactly as py-spy samples
are (:mod:`~infraprof.analyses.python_frames`): for every gap of a host-side or blocking
category (``host-cpu``, ``host-wait``, ``sync``, ``memcpy``, ``allocation``) the launching
thread's samples inside the category's time segments are pooled per finding, each sample
weighted by an equal part of the gap's idle time of that category. Gaps without samples (a
thread blocked in ``pwrite`` is not sampled) use the backtraces nsys records for OS-runtime and
CUDA API calls (``OSRT_CALLCHAINS``, ``CUDA_CALLCHAINS``) of the calls overlapping those
segments, each weighted by its overlap; ``native_samples`` then counts those calls.

Which frames count (:func:`is_meaningful`): *system* frames are skipped — the C library,
pthreads, the dynamic loader, libcuda and the NVIDIA driver, the kernel, the profiler's own
injection libraries, the Python interpreter and binding glue (``pybind11::``, Python C-API
symbols), process/thread entry points (``main``, ``MAIN_``,
``_start``, ``start_thread``, ``clone``), unresolved addresses (``0x…``) and nsys's markers
(``[Max depth]``: the stack was cut, nsys records at most a fixed number of frames from the
leaf, so the callers above are unknown — said as ``native_stack_cut``; ``[Broken
backtraces]``: unwinding failed there, treated the same way).

How a pool is summarised (:func:`summarize_pool`): the *chain* is the meaningful frames that
at least half of the samples with any meaningful frame pass through, ordered root first (by
their mean distance from the leaf, which nsys's leaf-anchored stacks keep even when cut). The
*named frame* is the first chain frame that fewer than 95 % of them pass through (frames above
it enclose everything, like ``Solver::run``) or above which most of its stacks were cut (the
outermost code that is known), else the chain's last (leaf-most) frame; the chain is kept as
``native_path``. Without a chain, the most common leaf-most meaningful frame
is named. ``native_self_frames`` lists the leaf-most meaningful frames (where the time went).

Splitting a site (:func:`split_keys`): each gap's samples vote for their stack's root-most
meaningful frame (the outermost code visible: ``miniweather_output`` for an output writer,
``ompi_file_open`` for a stack cut inside MPI-IO's component loading); the winner is the gap's
key. Gaps of one (category, site) whose keys differ become separate findings; keys holding
less than 10 % of the site's idle time, or fewer than 5 samples, join the site's largest
group. Gaps without samples (shorter than the sampling period, mostly) take the key of the
nearest gap of their site in time that has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from infraprof.analyses.findings import Finding
from infraprof.analyses.gap_table import GapTable
from infraprof.analyses.host_jobs import host_jobs, job_windows
from infraprof.analyses.names import factorized_text
from infraprof.analyses.sites import WHAT, idle_text
from infraprof.model import Trace
from infraprof.tables import as_series

NATIVE_CATEGORIES = ("host-cpu", "host-wait", "sync", "memcpy", "allocation")
CHAIN_SHARE = 0.5
ENCLOSING_SHARE = 0.95
SPLIT_MIN_SHARE = 0.10
SPLIT_MIN_SAMPLES = 5
MAX_DEPTH = "[Max depth]"
CUT_MARKERS = (MAX_DEPTH, "[Broken backtraces]")
SOURCES = ("sampling", "osrt", "cuda")
_SYSTEM_MODULE = re.compile(
    r"^(libc|libpthread|libdl|librt|libm|ld|ld-linux(-x86-64|-aarch64)?|libgcc_s|libstdc\+\+|"
    r"libcuda|libnvidia-.*|libcupti|libToolsInjection.*|libnss_.*|libpython[\d.]*m?|"
    r"python[\d.]*|vmlinux|\[kernel\.kallsyms\]|\[vdso\]|\[vsyscall\]|\[unknown\])$")
_ENTRY_SYMBOLS = frozenset({"main", "MAIN_", "_start", "__libc_start_main", "start_thread",
                            "clone", "__clone", "__clone3"})
_UNRESOLVED = re.compile(r"^(0x[0-9a-fA-F]+|\[.*\]|)$")  # addresses, nsys's [markers]
_GLUE = re.compile(r"^(pybind11::|_?Py[A-Z][A-Za-z]*_|_PyEval|method_vectorcall|cfunction_)")
_VERSION = re.compile(r"(\.so)(\.[\d.]*)?$|-[\d.]+(?=\.so)|-[\d.]+$")


def module_name(path: str | None) -> str:
    """Short module name: ``/usr/lib64/libmpi.so.40.30.1`` → ``libmpi``, ``libc-2.17.so`` →
    ``libc``, an executable's path → its file name."""
    if not path:
        return ""
    base = PurePosixPath(str(path)).name if not str(path).startswith("[") else str(path)
    short = _VERSION.sub("", base)
    return short.removesuffix(".so") or base


def is_meaningful(symbol: str | None, module: str) -> bool:
    """False for system frames, entry points, unresolved addresses and ``[Max depth]``."""
    sym = "" if symbol is None else str(symbol)
    if _UNRESOLVED.match(sym) or sym in _ENTRY_SYMBOLS or _GLUE.match(sym):
        return False
    return not _SYSTEM_MODULE.match(module)


@dataclass(frozen=True)
class NativeStacks:
    """Sampling callchains, prepared once: ``frames`` (``callchain_id, depth, code, function,
    module, label`` of the meaningful frames only, sorted by key and depth; ``code`` numbers
    the distinct (symbol, module) pairs), ``cut`` (callchain id → depth of its
    ``[Max depth]`` marker, -1 when the stack is whole) and ``root`` (callchain id → label of
    its root-most meaningful frame)."""

    frames: pd.DataFrame
    cut: pd.Series
    root: pd.Series

    @property
    def empty(self) -> bool:
        return self.cut.empty

    def frames_of(self, keys: np.ndarray) -> pd.DataFrame:
        """The meaningful frames of callchains ``keys`` (``frames`` is sorted by key, so this
        is a slice per key rather than a scan of every frame)."""
        ids = self.frames["callchain_id"].to_numpy(np.int64)
        lo = np.searchsorted(ids, keys, side="left")
        n = np.searchsorted(ids, keys, side="right") - lo
        idx = np.repeat(lo - np.concatenate(([0], np.cumsum(n)[:-1])), n) + np.arange(n.sum())
        rows: pd.DataFrame = self.frames.iloc[idx]
        return rows


def chain_keys(callchain_ids: pd.Series | np.ndarray, source: str) -> np.ndarray:
    """Keys of :class:`NativeStacks` for callchain ids of one ``source`` (``sampling``,
    ``osrt``, ``cuda``: each export table numbers its callchains from 1)."""
    return np.asarray(callchain_ids, dtype=np.int64) * len(SOURCES) + SOURCES.index(source)


def native_stacks(callchains: pd.DataFrame) -> NativeStacks:
    """Prepare the callchains of a trace — CPU samples', OS-runtime and CUDA calls'
    backtraces, keyed by :func:`chain_keys` (vectorised over frames: the per-frame tests run
    once per distinct (symbol, module) pair)."""
    f = callchains[callchains["source"].isin(SOURCES)]
    codes = f["source"].map({s: i for i, s in enumerate(SOURCES)}).to_numpy(np.int64)
    ids = f["callchain_id"].to_numpy(np.int64) * len(SOURCES) + codes
    depth = f["depth"].to_numpy(np.int64)
    sym_codes, sym_uniques = factorized_text(f["symbol"])
    mod_codes, mod_uniques = factorized_text(f["module"])
    syms = np.array(["" if x is None or x != x else str(x) for x in sym_uniques], dtype=object)
    mods = np.array([module_name(None if x is None or x != x else str(x))
                     for x in mod_uniques], dtype=object)
    pair_codes, pair_uniques = pd.factorize(
        sym_codes.astype(np.int64) * max(1, len(mods)) + mod_codes)
    pair_sym = syms[pair_uniques // max(1, len(mods))] if len(f) else syms[:0]
    pair_mod = mods[pair_uniques % max(1, len(mods))] if len(f) else mods[:0]
    keep = np.array([is_meaningful(a, b) for a, b in zip(pair_sym, pair_mod, strict=True)],
                    dtype=bool)
    labels = np.array([f"{a} ({b})" for a, b in zip(pair_sym, pair_mod, strict=True)],
                      dtype=object)
    mask = keep[pair_codes] if len(f) else np.zeros(0, dtype=bool)
    marker = np.isin(syms, CUT_MARKERS)[sym_codes] if len(f) else mask
    cut = pd.Series(np.where(marker, depth, -1)).groupby(ids).max()
    chosen = pair_codes[mask]
    frames = pd.DataFrame({"callchain_id": ids[mask], "depth": depth[mask], "code": chosen,
                           "function": pair_sym[chosen], "module": pair_mod[chosen],
                           "label": labels[chosen]})
    order = np.lexsort((frames["depth"].to_numpy(), frames["callchain_id"].to_numpy()))
    frames = frames.iloc[order].reset_index(drop=True)
    last = frames.drop_duplicates("callchain_id", keep="last")
    roots = pd.Series(last["label"].to_numpy(object), index=last["callchain_id"].to_numpy())
    return NativeStacks(frames, cut.astype("int64"), roots)


def thread_samples_in_windows(samples: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """``job, callchain_id`` for every sample of ``windows`` (``job, global_tid, start_ns,
    end_ns``) that lies in ``[start_ns, end_ns)`` on the window's thread (vectorised)."""
    out = []
    for gtid, win in windows.groupby("global_tid", sort=False):
        rows = samples[samples["global_tid"] == gtid]
        ts = rows["start_ns"].to_numpy(np.int64)
        order = np.argsort(ts, kind="stable")
        ts, cids = ts[order], rows["callchain_id"].to_numpy(np.int64)[order]
        lo = np.searchsorted(ts, win["start_ns"].to_numpy(np.int64), side="left")
        hi = np.searchsorted(ts, win["end_ns"].to_numpy(np.int64), side="left")
        n = hi - lo
        if not n.sum():
            continue
        jobs = np.repeat(win["job"].to_numpy(np.int64), n)
        starts = np.repeat(lo - np.concatenate(([0], np.cumsum(n)[:-1])), n)
        idx = starts + np.arange(int(n.sum()))
        out.append(pd.DataFrame({"job": jobs, "callchain_id": cids[idx]}))
    if not out:
        out.append(pd.DataFrame({"job": pd.Series([], dtype="int64"),
                                 "callchain_id": pd.Series([], dtype="int64")}))
    joined: pd.DataFrame = pd.concat(out, ignore_index=True)
    return joined


def calls_in_windows(calls: pd.DataFrame | None, windows: pd.DataFrame) -> pd.DataFrame:
    """``job, callchain_id, overlap`` (ns) for every call of ``calls`` (``start_ns, end_ns,
    global_tid, callchain_id``) overlapping a window of ``windows`` on its thread."""
    out = [pd.DataFrame({"job": pd.Series([], dtype="int64"),
                         "callchain_id": pd.Series([], dtype="int64"),
                         "overlap": pd.Series([], dtype="int64")})]
    if calls is None:
        calls = out[0].assign(start_ns=0, end_ns=0, global_tid=0)
    for gtid, win in windows.groupby("global_tid", sort=False):
        rows = calls[calls["global_tid"] == gtid].sort_values("start_ns", kind="stable")
        if rows.empty:
            continue
        starts, ends = rows["start_ns"].to_numpy(np.int64), rows["end_ns"].to_numpy(np.int64)
        lo = np.searchsorted(np.maximum.accumulate(ends), win["start_ns"].to_numpy(np.int64),
                             side="right")
        hi = np.searchsorted(starts, win["end_ns"].to_numpy(np.int64), side="left")
        n = np.maximum(hi - lo, 0)
        idx = np.repeat(lo - np.concatenate(([0], np.cumsum(n)[:-1])), n) + np.arange(n.sum())
        w0 = np.repeat(win["start_ns"].to_numpy(np.int64), n)
        w1 = np.repeat(win["end_ns"].to_numpy(np.int64), n)
        overlap = np.minimum(ends[idx], w1) - np.maximum(starts[idx], w0)
        keep = overlap > 0
        out.append(pd.DataFrame({
            "job": np.repeat(win["job"].to_numpy(np.int64), n)[keep],
            "callchain_id": rows["callchain_id"].to_numpy(np.int64)[idx][keep],
            "overlap": overlap[keep]}))
    joined: pd.DataFrame = pd.concat(out, ignore_index=True)
    return joined


@dataclass(frozen=True)
class NativePools:
    """Samples in the gaps: ``pairs`` has one row per (job, sample) with ``weight`` (idle ns the
    sample stands for), ``category``, ``site`` and the split ``key`` ("" = none); ``keys``
    lists ``device_id, g0, category, key``: each gap's non-empty key after merging."""

    stacks: NativeStacks
    pairs: pd.DataFrame
    keys: pd.DataFrame


def native_pools(attributions: GapTable, samples: pd.DataFrame,
                 stacks: NativeStacks, split: bool = True,
                 backtraced: pd.DataFrame | None = None) -> NativePools | None:
    """Pool the launching thread's samples per (gap, category); None without samples.
    ``split``: give gaps split keys (off when py-spy frames name the findings);
    ``backtraced``: OS-runtime and CUDA calls with backtraces (``start_ns, end_ns,
    global_tid, callchain_id`` as :func:`chain_keys`), used for gaps without samples, each
    weighted by its overlap with the category's time. Only gaps with host activity have time
    of these categories (the others are ``dependency``/``unknown`` throughout)."""
    if stacks.empty or samples.empty:
        return None
    jobs = host_jobs(attributions, NATIVE_CATEGORIES)
    windows = job_windows(attributions, jobs)
    pairs = thread_samples_in_windows(samples, windows)
    pairs["callchain_id"] = chain_keys(pairs["callchain_id"], "sampling")
    pairs["overlap"] = 1
    calls = calls_in_windows(backtraced, windows)
    pairs = pd.concat([pairs, calls[~calls["job"].isin(pairs["job"])]], ignore_index=True)
    info = jobs[["ns", "category", "site"]]
    pairs = pairs.join(info, on="job")
    pairs["weight"] = pairs["ns"] * pairs["overlap"] / pairs.groupby("job")[
        "overlap"].transform("sum")
    pairs["root"] = pairs["callchain_id"].map(stacks.root).fillna("")
    pairs["cut"] = pairs["callchain_id"].map(stacks.cut).fillna(-1) >= 0
    job_key = _job_keys(pairs) if split else pd.Series(dtype=object)
    # the job's key by index alignment (Index.map re-infers the type of every job's text)
    info = info.assign(key=job_key.reindex(info.index).fillna("") if len(job_key) else "",
                       samples=pairs.groupby("job").size().reindex(info.index, fill_value=0),
                       start_ns=jobs["start_ns"])
    info["key"] = _merge_small(_nearest_key(info))
    pairs["key"] = pairs["job"].map(info["key"])
    keyed = (info["key"] != "").to_numpy()
    keys = pd.DataFrame({"device_id": jobs["device_id"].to_numpy()[keyed],
                         "g0": jobs["start_ns"].to_numpy()[keyed],
                         "category": jobs["category"].to_numpy()[keyed],
                         "key": info["key"].astype(str).to_numpy(dtype=object)[keyed]})
    return NativePools(stacks, pairs, keys)


def _job_keys(pairs: pd.DataFrame) -> pd.Series:
    """Per job: the root frame with the most samples (ties: uncut stacks, then name)."""
    named = pairs[pairs["root"] != ""]
    if named.empty:
        return pd.Series(dtype=object)
    votes = named.groupby(["job", "root"]).agg(n=("weight", "size"), whole=("cut", "min"))
    votes = votes.reset_index().sort_values(["job", "n", "whole", "root"],
                                            ascending=[True, False, True, True])
    winners: pd.Series = votes.drop_duplicates("job").set_index("job")["root"]
    return winners


def _nearest_key(info: pd.DataFrame) -> pd.DataFrame:
    """Gaps without a key take the key of the nearest gap (in time) of their (category,
    site) that has one; they keep none when no gap of the site has one."""
    keyed = info[info["key"] != ""]
    if keyed.empty or (info["key"] != "").all():
        return info
    bare = info[info["key"] == ""].reset_index().sort_values("start_ns")
    near = pd.merge_asof(bare, keyed[["category", "site", "start_ns", "key"]].sort_values(
        "start_ns"), on="start_ns", by=["category", "site"], direction="nearest",
        suffixes=("_own", ""))
    found = near.set_index("index")["key"].dropna()
    out: pd.DataFrame = info.copy()
    out.loc[found.index, "key"] = found
    return out


def _merge_small(info: pd.DataFrame) -> pd.Series:
    """Keys below :data:`SPLIT_MIN_SHARE` of their (category, site)'s idle, or with fewer
    than :data:`SPLIT_MIN_SAMPLES` samples, join the site's largest group."""
    by = info.groupby(["category", "site", "key"], sort=False).agg(
        ns=("ns", "sum"), samples=("samples", "sum")).reset_index()
    total = by.groupby(["category", "site"])["ns"].transform("sum")
    top = by.sort_values(["ns", "key"], ascending=[False, True]).drop_duplicates(
        ["category", "site"]).set_index(["category", "site"])["key"]
    small = by[(by["ns"] < SPLIT_MIN_SHARE * total) | (by["samples"] < SPLIT_MIN_SAMPLES)]
    small = small.assign(top=small.set_index(["category", "site"]).index.map(top))
    merged = info[["category", "site", "key"]].merge(
        small[["category", "site", "key", "top"]], how="left", on=["category", "site", "key"])
    keys = merged["top"].where(merged["top"].notna(), merged["key"]).to_numpy(dtype=object)
    return as_series(pd.Series(keys, index=info.index, dtype=object))


@dataclass(frozen=True)
class NativeSummary:
    """A pool's named frame, chain (root first), leaf-most frames and totals."""

    named: dict[str, Any] | None
    path: list[dict[str, Any]]
    self_frames: list[dict[str, Any]]
    samples: int
    system_only_samples: int
    cut: bool  # most stacks through the named frame were cut right above it


def summarize_pool(pool: pd.DataFrame, stacks: NativeStacks, top: int = 5) -> NativeSummary:
    """Summarise ``pool`` (rows ``callchain_id, weight``; see the module docstring). Frames
    are grouped by their integer ``code`` (one per distinct symbol and module)."""
    total_w = float(pool["weight"].sum()) or 1.0
    w = pool.groupby("callchain_id").agg(weight=("weight", "sum"), samples=("weight", "size"))
    fr = stacks.frames_of(w.index.to_numpy(np.int64)).join(w, on="callchain_id")
    with_frames = w[w.index.isin(fr["callchain_id"])]
    named_w = float(with_frames["weight"].sum())
    system_only = int(w["samples"].sum() - with_frames["samples"].sum())
    if fr.empty:
        return NativeSummary(None, [], [], int(w["samples"].sum()), system_only, False)
    names = fr.drop_duplicates("code").set_index("code")[["label", "function", "module"]]
    once = fr.drop_duplicates(["callchain_id", "code"])
    below_cut = once["callchain_id"].map(stacks.cut).to_numpy(np.int64) == once["depth"] + 1
    once = once.assign(wd=once["weight"] * once["depth"],
                       cut_w=once["weight"].where(below_cut.to_numpy(bool), 0.0))
    inc = once.groupby("code").agg(weight=("weight", "sum"), samples=("samples", "sum"),
                                   wd=("wd", "sum"), cut_w=("cut_w", "sum")).join(names)
    inc["depth"] = inc["wd"] / inc["weight"]
    inc["share"] = inc["weight"] / named_w
    inc["cut"] = inc["cut_w"] >= 0.5 * inc["weight"]
    chain = inc[inc["share"] >= CHAIN_SHARE].sort_values(["depth", "label"],
                                                         ascending=[False, True])
    leaf = fr.drop_duplicates("callchain_id")  # frames are sorted by (key, depth): the leaf
    selfs = leaf.groupby("code").agg(weight=("weight", "sum"), samples=("samples", "sum")
                                     ).join(names).sort_values(["weight", "label"],
                                                               ascending=[False, True])
    if len(chain):
        below = chain[(chain["share"] < ENCLOSING_SHARE) | chain["cut"]]
        pick_code = (below if len(below) else chain.iloc[-1:]).index[0]
    else:
        pick_code = selfs.index[0]
    pick = inc.loc[pick_code]
    cut = bool(pick["cut"])

    def row(r: Any, weight: float, samples: int) -> dict[str, Any]:
        return {"function": str(r["function"]), "module": str(r["module"]),
                "share_of_idle": round(weight / total_w, 4), "samples": int(samples)}

    return NativeSummary(
        row(pick, float(pick["weight"]), int(pick["samples"])),
        [row(r, float(r["weight"]), int(r["samples"])) for _, r in chain.iterrows()],
        [row(r, float(r["weight"]), int(r["samples"])) for _, r in selfs.head(top).iterrows()],
        int(w["samples"].sum()), system_only, bool(cut))


def with_native_frames(finding: Finding, key: str, pools: NativePools | None) -> Finding:
    """``finding`` (a gap finding of :data:`NATIVE_CATEGORIES`) with its pooled native frames
    appended to the evidence; titled by the named frame when it holds ≥ 25 % of the idle time,
    at least :data:`SPLIT_MIN_SAMPLES` samples have a meaningful frame and no Python frame
    already names the finding."""
    if pools is None or finding.category not in NATIVE_CATEGORIES:
        return finding
    site = str(finding.evidence.get("site"))
    p = pools.pairs
    pool = p[(p["category"] == finding.category) & (p["site"] == site) & (p["key"] == key)]
    if pool.empty:
        return finding
    summary = summarize_pool(pool, pools.stacks)
    ev = dict(finding.evidence)
    idle = max(1, int(ev.get("gpu_idle_ns", 1)))
    scale = float(pool["weight"].sum()) / idle
    for item in (summary.named, *summary.path, *summary.self_frames):
        if item is not None:
            item["share_of_idle"] = round(item["share_of_idle"] * scale, 4)
    ev["native_frame"] = summary.named
    ev["native_path"] = summary.path
    ev["native_self_frames"] = summary.self_frames
    ev["native_stack_cut"] = summary.cut
    ev["native_samples"] = summary.samples
    ev["native_system_only_samples"] = summary.system_only_samples
    python = ev.get("python_frames") or []
    if summary.named is None or summary.named["share_of_idle"] < 0.25 or (
            summary.samples - summary.system_only_samples < SPLIT_MIN_SAMPLES) or (
            python and python[0]["share_of_idle"] >= 0.25):
        return replace(finding, evidence=ev)
    return replace(finding, title=native_title(finding, summary), evidence=ev)


def short_symbol(symbol: str, limit: int = 60) -> str:
    """A C++ symbol as titles print it: no return type or parameter list, long template
    arguments elided (``cudaError cudaMalloc<double>(double**, unsigned long)`` →
    ``cudaMalloc<double>``). Evidence keeps the full symbol."""
    depth, cut = 0, len(symbol)
    if symbol.endswith(")"):
        for i in range(len(symbol) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(symbol[i], 0)
            if depth == 0:
                cut = i
                break
    name, depth, start = symbol[:cut], 0, 0
    for i, ch in enumerate(name):
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == " " and depth == 0:
            start = i + 1
    name = name[start:] or symbol
    if len(name) > limit:
        name = re.sub(r"<.*>", "<…>", name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _frame_text(item: dict[str, Any]) -> str:
    return f"`{short_symbol(item['function'])}` ({item['module']})"


def native_title(finding: Finding, summary: NativeSummary) -> str:
    """``GPU idle 77.9 ms (28 % of …): host in `ompi_file_open` (libmpi) → `…` (libmpi),
    stack cut above (site; what)``."""
    assert summary.named is not None
    idle = int(finding.evidence.get("gpu_idle_ns", 0))
    active = finding.impact_ns / finding.share if finding.share > 0 else 0
    pct = f" ({100 * idle / active:.0f} % of the GPU's active span)" if active else ""
    where = _frame_text(summary.named)
    names = [(f["function"], f["module"]) for f in summary.path]
    here = (summary.named["function"], summary.named["module"])
    if here in names and names.index(here) + 1 < len(names):
        where += " → " + _frame_text(summary.path[names.index(here) + 1])
    cut = ", stack cut above it" if summary.cut else ""
    return (f"GPU idle {idle_text(idle)}{pct}: host in {where}{cut} "
            f"({finding.evidence.get('site')}; {WHAT[finding.category]})")


def backtraced_calls(trace: Trace) -> pd.DataFrame:
    """OS-runtime and CUDA API calls that have a backtrace: ``start_ns, end_ns, global_tid,
    callchain_id`` (as :func:`chain_keys`)."""
    parts = []
    for table, source in ((trace.osrt, "osrt"), (trace.api_calls, "cuda")):
        rows = table[table["callchain_id"].notna()]
        parts.append(pd.DataFrame({
            "start_ns": rows["start_ns"].to_numpy(np.int64),
            "end_ns": rows["end_ns"].to_numpy(np.int64),
            "global_tid": rows["global_tid"].to_numpy(np.int64),
            "callchain_id": chain_keys(rows["callchain_id"].to_numpy(np.int64), source)}))
    joined: pd.DataFrame = pd.concat(parts, ignore_index=True)
    return joined
