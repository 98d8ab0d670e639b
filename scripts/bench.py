"""Benchmark infraprof on a large real-derived nsys export, against references in the same run.

The file is built from a shared real export (default: ``nersc-sc22-dl/baseline``, 28,674
kernels) by replicating the rows of every activity table (kernels, CUDA API, memcpy, memset,
synchronization, CUDA events, NVTX, OS runtime, scheduling, profiler overhead; CPU samples and
their callchains with ``--with-samples``) with timestamps shifted by the capture span (+1 ms) and
correlation ids shifted by the largest id per copy, in SQL (``INSERT … SELECT``). It is kept in
``BENCH_DIR`` (default ``~/.cache/infraprof/bench``), never committed, and rebuilt only when
missing. Then each step runs as its own process and its wall time and peak RSS are measured
(``os.wait4``):

* ``bare read``: sqlite3 -> numpy of the kernel and runtime columns an analysis needs;
* ``bare read arrow``: the same columns through ADBC's SQLite driver -> Arrow C stream (read
  with this checkout's ``infraprof.readers.arrow_stream``) -> numpy (when the ``fast`` extra is
  installed), one table after the other; ``bare read arrow 2 threads``: the two tables at once
  (what ``analyze`` does on two or more cores); the ``cold_vs_bare_read`` ratios are against
  the fastest bare read in each unit (the fewest CPU seconds, the fewest wall seconds), and
  ``bare_read_vs_nsys_stats`` is that read against ``nsys stats`` (the floor of
  ``cold_vs_nsys_stats``);
* ``nsys stats``: ``nsys stats -r gpukernsum`` on the same file (when nsys is installed);
* ``cold``: ``infraprof analyze FILE -f json`` with an empty cache dir;
* ``warm``: the same again, its columnar *table* cache filled by the cold run, with the result
  cache off (``INFRAPROF_RESULT_CACHE=0``): the re-analysis of a cached export;
* ``warm result``: the same again with the result cache on (a hit on the entry the cold run
  wrote: start-up, key and the stored JSON only; :mod:`infraprof.result_cache`);
* ``--help`` and ``analyze`` of a small sample trace (start-up cost; result cache off, so
  the small trace is analysed each time);
* ``export perfetto``: ``infraprof export FILE -o X.perfetto-trace --max-size 0`` (the
  complete export), ``export 50 MB`` the same with the default ``--max-size`` (50 MB: counters
  and one detail window when the complete export is larger), and ``export 1 step`` with
  ``--window step:2``, each with the file size.

The measured processes use bytecode as an installed package does: a warm-up run compiles the
checkout's modules into ``BENCH_DIR/pycache`` (``PYTHONPYCACHEPREFIX``), even where
``PYTHONDONTWRITEBYTECODE`` is set (compiling ~100 modules at every start costs ~0.12 s).

Prints a table (wall and CPU seconds, peak RSS), the ratios and one JSON line (``{"bench": ...}``,
with the 1-minute load average: on a shared machine compare CPU seconds). Nothing is asserted.
Usage: ``python scripts/bench.py [--kernels N]`` (or ``BENCH_KERNELS=N make bench``).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "traces"
SOURCES = (
    Path("/tmp/snap_inputs/nersc-sc22-dl__baseline.nsys2022.4-export.sqlite"),
    SHARED / "nersc-sc22-dl" / "baseline.nsys2022.4-export.sqlite.gz",
    ROOT / "sample_traces" / "demo_launch_bound.sqlite",
)
SMALL_TRACE = ROOT / "sample_traces" / "demo_host_stall.sqlite"
ACTIVITY_TABLES = (
    "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_MEMCPY",
    "CUPTI_ACTIVITY_KIND_MEMSET", "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION",
    "CUPTI_ACTIVITY_KIND_CUDA_EVENT", "NVTX_EVENTS", "OSRT_API", "SCHED_EVENTS",
    "PROFILER_OVERHEAD",
)
SAMPLE_TABLES = ("COMPOSITE_EVENTS", "SAMPLING_CALLCHAINS")
TIME_COLUMNS = ("start", "end", "timestamp")


def _source(given: str | None) -> Path:
    """The export to replicate: ``given``, else the first of :data:`SOURCES` that exists."""
    for path in ([Path(given)] if given else SOURCES):
        if path.is_file():
            return path
    raise SystemExit("bench: no source export found; pass --source FILE.sqlite[.gz]")


def _copy_source(source: Path, target: Path) -> None:
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _shifts(con: sqlite3.Connection, tables: set[str]) -> tuple[int, int, int]:
    """(time shift ns, correlation id shift, sample id shift) per copy."""
    t0, t1, corr, sample = None, 0, 0, 0
    for table in ("CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_RUNTIME",
                  "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET", "NVTX_EVENTS",
                  "OSRT_API"):
        if table in tables:
            lo, hi, top = con.execute(
                f'SELECT min(start), max(coalesce("end", start)), '
                f'{"max(correlationId)" if table.startswith("CUPTI") else "0"} '
                f'FROM "{table}"').fetchone()
            if lo is not None:
                t0 = lo if t0 is None else min(t0, lo)
                t1, corr = max(t1, hi), max(corr, top or 0)
    if "ANALYSIS_DETAILS" in tables:
        start, stop = con.execute("SELECT startTime, stopTime FROM ANALYSIS_DETAILS").fetchone()
        t0, t1 = min(t0 if t0 is not None else start, start), max(t1, stop)
    if "COMPOSITE_EVENTS" in tables:
        sample = int(con.execute("SELECT coalesce(max(id), 0) FROM COMPOSITE_EVENTS").fetchone()[0])
    return int(t1 - (t0 or 0)) + 1_000_000, int(corr) + 1, sample + 1


def _replicate(con: sqlite3.Connection, table: str, shifts: tuple[int, int, int]) -> None:
    """Append copies 1..max(_copies.c) of ``table``'s original rows, shifted."""
    time_shift, corr_shift, id_shift = shifts
    exprs = []
    for (name,) in con.execute(f"SELECT name FROM pragma_table_info('{table}')"):
        col = f'"{name}"'
        if name in TIME_COLUMNS:
            exprs.append(f"{col} + c * {time_shift}")
        elif name == "correlationId":
            exprs.append(f"{col} + c * {corr_shift}")
        elif table in SAMPLE_TABLES and name == "id":
            exprs.append(f"{col} + c * {id_shift}")
        else:
            exprs.append(col)
    rows = con.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0]
    if rows is None:
        return
    con.execute(f'INSERT INTO "{table}" SELECT {", ".join(exprs)} FROM "{table}" '
                f'JOIN temp._copies WHERE "{table}".rowid <= {int(rows)} '
                f'ORDER BY c, "{table}".rowid')


def build(source: Path, target: Path, copies: int, with_samples: bool) -> int:
    """Write ``target``: ``source`` with its activity rows replicated ``copies`` times.
    Returns the number of kernels. Written under a temporary name, then renamed."""
    partial = target.with_name(target.name + ".partial")
    _copy_source(source, partial)
    con = sqlite3.connect(partial)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    shifts = _shifts(con, tables)
    con.execute("CREATE TEMP TABLE _copies(c INTEGER PRIMARY KEY)")
    con.executemany("INSERT INTO temp._copies VALUES (?)", [(c,) for c in range(1, copies)])
    for table in (*ACTIVITY_TABLES, *(SAMPLE_TABLES if with_samples else ())):
        if table in tables:
            _replicate(con, table, shifts)
    if "ANALYSIS_DETAILS" in tables:
        extra = (copies - 1) * shifts[0]
        con.execute(f"UPDATE ANALYSIS_DETAILS SET stopTime = stopTime + {extra}, "
                    f"duration = duration + {extra}")
    con.commit()
    kernels = int(con.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0])
    con.close()
    partial.replace(target)
    return kernels


BARE_READ = """
import itertools, sqlite3, sys, numpy as np
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro&immutable=1", uri=True)
def read(sql):  # 16 k rows at a time, flattened into int64 (the fastest sqlite3 path measured)
    cur, parts = con.execute(sql), []
    while rows := cur.fetchmany(16384):
        values = itertools.chain.from_iterable(rows)
        parts.append(np.fromiter(values, dtype=np.int64, count=len(rows) * len(rows[0]))
                     .reshape(len(rows), -1))
    return np.concatenate(parts) if parts else np.empty((0, 0), dtype=np.int64)
k = read("SELECT start, end, deviceId, streamId, correlationId, globalPid, demangledName, "
         "shortName FROM CUPTI_ACTIVITY_KIND_KERNEL")
r = read("SELECT start, end, globalTid, correlationId, nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME")
print(len(k), len(r))
"""


BARE_READ_ARROW = """
import sys, threading, urllib.parse, numpy as np
sys.path.insert(0, sys.argv[3])  # this checkout: its Arrow C stream reader
import adbc_driver_manager, adbc_driver_sqlite
from infraprof.readers.arrow_stream import int64_batches
uri = "file:" + urllib.parse.quote(sys.argv[1]) + "?mode=ro&immutable=1"
def read(sql, count, out):  # the Arrow stream, 64 k-row batches, int64 copies joined per column
    with adbc_driver_sqlite.connect(uri) as database, \\
            adbc_driver_manager.AdbcConnection(database) as connection, \\
            adbc_driver_manager.AdbcStatement(connection) as statement:
        statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
        statement.set_sql_query(sql)
        handle, _ = statement.execute_query()
        parts = list(int64_batches(handle.address, count, -2**63))
        handle.release()
    out.append([np.concatenate(column) for column in zip(*parts)])
queries = [("SELECT start, end, deviceId, streamId, correlationId, globalPid, demangledName, "
            "shortName FROM CUPTI_ACTIVITY_KIND_KERNEL", 8),
           ("SELECT start, end, globalTid, correlationId, nameId "
            "FROM CUPTI_ACTIVITY_KIND_RUNTIME", 5)]
out = []
if sys.argv[2] == "1":  # one table after the other
    for sql, count in queries:
        read(sql, count, out)
else:  # both at once, one thread each (the GIL is released while SQLite steps)
    threads = [threading.Thread(target=read, args=(sql, count, out)) for sql, count in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print(sorted(len(columns[0]) for columns in out))
"""


def _has_arrow_driver() -> bool:
    try:
        return importlib.util.find_spec("adbc_driver_sqlite") is not None
    except (ImportError, ValueError):
        return False


BARE_READS = ("bare read", "bare read arrow", "bare read arrow 2 threads")


def fastest_bare_read(results: dict[str, dict[str, float]], unit: str = "cpu_s"
                      ) -> dict[str, float]:
    """The bare read (sqlite3, Arrow, or Arrow with both tables read at once) with the fewest
    ``unit`` seconds (``cpu_s`` or ``wall_s``)."""
    reads = [results[name] for name in BARE_READS
             if name in results and "failed" not in results[name]]
    return min(reads, key=lambda r: r[unit]) if reads else results["bare read"]


MEMORY_LIMIT_GIB = float(os.environ.get("BENCH_MEMORY_LIMIT_GIB", "0"))
"""Address-space limit of each measured process (0: none). Set it on a shared machine, so that
a run too large for it fails alone (reported as not completed) instead of exhausting memory."""


def _limit_memory() -> None:
    if MEMORY_LIMIT_GIB > 0:
        import resource

        limit = int(MEMORY_LIMIT_GIB * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


PYCACHE: Path | None = None
"""Where the measured processes keep their bytecode (``PYTHONPYCACHEPREFIX``; set by
:func:`main`): an installed package has its ``.pyc`` files, so the bench lets the checkout's
modules be compiled once (the warm-up run) instead of at every start, whatever
``PYTHONDONTWRITEBYTECODE`` says, and without writing ``__pycache__`` into the checkout."""


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    merged = {**os.environ, **(env or {})}
    if PYCACHE is not None:
        merged.pop("PYTHONDONTWRITEBYTECODE", None)
        merged["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return merged


def measure(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``argv`` to completion; wall and CPU seconds and peak RSS (MiB) of that process
    tree. It runs in ``env["PYTHONPATH"]`` (else here): ``python -m`` puts its working directory
    first on ``sys.path``, so this is what makes ``--repo`` choose the checkout measured.
    A process that fails (e.g. past ``BENCH_MEMORY_LIMIT_GIB``) is reported with
    ``"failed": exit code`` and its figures up to then."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_child_env(env),
                            cwd=(env or {}).get("PYTHONPATH") or None, preexec_fn=_limit_memory)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
           "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}
    if proc.returncode != 0:
        print(f"bench: {' '.join(argv[-4:])} failed ({proc.returncode}): "
              f"{err.decode(errors='replace')[-500:]}", file=sys.stderr)
        out["failed"] = proc.returncode
    return out


def best(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Median wall time of ``repeat`` runs (and the peak RSS of that run)."""
    runs = sorted((measure(argv, env) for _ in range(repeat)), key=lambda r: r["wall_s"])
    return runs[len(runs) // 2]


def run_steps(db: Path, repo: Path, repeat: int, cache: Path, warm: bool = True,
              startup: bool = True) -> dict[str, dict[str, float]]:
    py = sys.executable
    env = {"PYTHONPATH": str(repo), "INFRAPROF_CACHE_DIR": str(cache), "CI": "true",
           "INFRAPROF_RESULT_CACHE": "1"}
    infraprof = [py, "-m", "infraprof"]
    # warm-up: the bytecode of every module the steps import is written (see PYCACHE)
    measure([*infraprof, "--help"], env)
    if SMALL_TRACE.is_file():
        measure([*infraprof, "analyze", str(SMALL_TRACE), "-f", "json"],
                {**env, "INFRAPROF_CACHE_DIR": str(cache.parent / "warm-up")})
    results = {"bare read": best([py, "-c", BARE_READ, str(db)], repeat)}
    if _has_arrow_driver():
        here = str(Path(__file__).resolve().parents[1])
        results["bare read arrow"] = best([py, "-c", BARE_READ_ARROW, str(db), "1", here], repeat)
        results["bare read arrow 2 threads"] = best(
            [py, "-c", BARE_READ_ARROW, str(db), "2", here], repeat)
    nsys = os.environ.get("INFRAPROF_NSYS") or shutil.which("nsys")
    if nsys:
        results["nsys stats"] = best([nsys, "stats", "-q", "-r", "gpukernsum", str(db)], repeat)
    colds = []
    for _ in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        colds.append(measure([*infraprof, "analyze", str(db), "-f", "json"], env))
    results["infraprof cold"] = sorted(colds, key=lambda r: r["wall_s"])[len(colds) // 2]
    tables_only = {**env, "INFRAPROF_RESULT_CACHE": "0"}
    if warm and "failed" not in results["infraprof cold"]:
        results["infraprof warm"] = best([*infraprof, "analyze", str(db), "-f", "json"], repeat,
                                         tables_only)
        results["infraprof warm result"] = best(
            [*infraprof, "analyze", str(db), "-f", "json"], repeat, env)
    if startup:
        results["infraprof --help"] = best([*infraprof, "--help"], repeat, env)
        if SMALL_TRACE.is_file():
            results["small trace"] = best(
                [*infraprof, "analyze", str(SMALL_TRACE), "-f", "json"], repeat, tables_only)
    return results


def export_steps(db: Path, repo: Path, cache: Path) -> dict[str, dict[str, float]]:
    """``infraprof export`` of the whole file to Perfetto protobuf (complete, and within the
    default 50 MB budget) and of one NVTX step (``--window step:2``), after the analyze runs
    (same cache); ``file_mib`` per step."""
    env = {"PYTHONPATH": str(repo), "INFRAPROF_CACHE_DIR": str(cache), "CI": "true"}
    out: dict[str, dict[str, float]] = {}
    for name, extra in (("export perfetto", ["--max-size", "0"]), ("export 50 MB", []),
                        ("export 1 step", ["--window", "step:2"])):
        target = cache.parent / f"{name.replace(' ', '-')}.perfetto-trace"
        out[name] = measure([sys.executable, "-m", "infraprof", "export", str(db), "-o",
                             str(target), *extra], env)
        if target.is_file():
            out[name]["file_mib"] = round(target.stat().st_size / 2**20, 1)
            target.unlink()
    return out


def ratios_of(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The ratios issue 11 sets targets for, in wall and in CPU seconds (on a shared machine
    CPU seconds are the comparable figure), and ``bare_read_vs_nsys_stats``: the fastest bare
    read against ``nsys stats``, the floor of ``cold_vs_nsys_stats`` (a cold analysis reads
    at least those columns). Empty when the cold run did not complete."""
    cold = results["infraprof cold"]
    if "failed" in cold:
        return {}
    warm = results.get("infraprof warm", cold)
    out: dict[str, float] = {}
    for unit in ("wall_s", "cpu_s"):
        tag = unit.split("_")[0]
        bare = max(fastest_bare_read(results, unit)[unit], 1e-3)
        out[f"cold_vs_bare_read_{tag}"] = cold[unit] / bare
        out[f"warm_vs_cold_{tag}"] = warm[unit] / max(cold[unit], 1e-3)
        hit = results.get("infraprof warm result")
        if hit is not None:
            out[f"warm_result_vs_cold_{tag}"] = hit[unit] / max(cold[unit], 1e-3)
        if "nsys stats" in results:
            nsys = max(results["nsys stats"][unit], 1e-3)
            out[f"cold_vs_nsys_stats_{tag}"] = cold[unit] / nsys
            out[f"bare_read_vs_nsys_stats_{tag}"] = bare / nsys
            out[f"warm_vs_nsys_stats_{tag}"] = warm[unit] / nsys
            if hit is not None:
                out[f"warm_result_vs_nsys_stats_{tag}"] = hit[unit] / nsys
        if "export perfetto" in results:
            out[f"export_vs_cold_{tag}"] = results["export perfetto"][unit] / max(cold[unit],
                                                                                 1e-3)
    return out


def report(kernels: int, size: int, results: dict[str, dict[str, float]]) -> dict[str, object]:
    width = max(22, *(len(name) for name in results))
    print(f"{'step':{width}} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
    for name, r in results.items():
        note = f"  FAILED (exit {r['failed']})" if "failed" in r else ""
        print(f"{name:{width}} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
              f"{r['peak_rss_mib']:9.0f}{note}")
    if "infraprof warm" in results:
        print("(infraprof warm: table cache only, result cache off; "
              "infraprof warm result: a result-cache hit)")
    ratios = ratios_of(results)
    for name, value in ratios.items():
        print(f"{name:34} {value:7.2f}x")
    cold = results["infraprof cold"]
    line = {"bench": "infraprof", "kernels": kernels, "file_mib": round(size / 2**20, 1),
            "steps": results, "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "rss_bytes_per_kernel": round(cold["peak_rss_mib"] * 2**20 / max(kernels, 1)),
            "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    return line


def growth(lines: list[dict[str, object]]) -> list[dict[str, float]]:
    """Cold CPU seconds and peak RSS per kernel at each size, relative to the smallest size
    (1.0 = linear; below 1 = better than linear)."""
    done = [ln for ln in lines if "failed" not in ln["steps"]["infraprof cold"]]  # type: ignore[index]
    if not done:
        return []
    first = done[0]["steps"]["infraprof cold"]  # type: ignore[index]
    out = []
    for ln in done:
        cold = ln["steps"]["infraprof cold"]  # type: ignore[index]
        scale = ln["kernels"] / done[0]["kernels"]  # type: ignore[operator]
        out.append({"kernels": ln["kernels"], "cpu_s": cold["cpu_s"],
                    "cpu_per_kernel_vs_first": round(cold["cpu_s"] / first["cpu_s"] / scale, 3),
                    "rss_per_kernel_vs_first": round(
                        cold["peak_rss_mib"] / first["peak_rss_mib"] / scale, 3)})
    return out


def prepare(source: Path, folder: Path, kernels: int, with_samples: bool) -> Path:
    """The real-derived export with at least ``kernels`` kernels (built when missing)."""
    base = sqlite3.connect(f"file:{source}?mode=ro", uri=True) if source.suffix != ".gz" else None
    per_copy = (int(base.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0])
                if base else 28_674)
    if base:
        base.close()
    copies = max(1, -(-kernels // max(per_copy, 1)))
    suffix = "-samples" if with_samples else ""
    db = folder / f"{source.name.split('.')[0]}-x{copies}{suffix}.sqlite"
    t0 = time.perf_counter()
    if not db.is_file():
        build(source, db, copies, with_samples)
    print(f"real-derived export: {source.name} x{copies}, {db.stat().st_size / 2**20:.0f} MiB "
          f"({time.perf_counter() - t0:.1f} s to prepare)")
    return db


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default=os.environ.get("BENCH_KERNELS", "1000000"),
                    help="kernel count, or several separated by commas (growth is printed)")
    ap.add_argument("--source", help="export to replicate (.sqlite or .sqlite.gz)")
    ap.add_argument("--dir", default=os.environ.get(
        "BENCH_DIR", str(Path.home() / ".cache" / "infraprof" / "bench")),
        help="where the built file is kept (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "1")))
    ap.add_argument("--repo", default=str(ROOT), help="infraprof checkout to measure")
    ap.add_argument("--no-warm", action="store_true",
                    help="skip the warm run (for checkouts without a cache)")
    ap.add_argument("--with-samples", action="store_true",
                    help="also replicate CPU samples and their callchains (large)")
    ap.add_argument("--in-place", action="store_true",
                    help="measure the built file where it is (read-only) instead of a private "
                    "copy: for files of several GB")
    args = ap.parse_args()
    source = _source(args.source)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    global PYCACHE
    PYCACHE = folder / "pycache"
    lines = []
    for i, kernels in enumerate(int(k) for k in str(args.kernels).split(",")):
        db = prepare(source, folder, kernels, args.with_samples)
        with tempfile.TemporaryDirectory(prefix="infraprof-bench-", dir=folder) as tmp:
            work = db if args.in_place else Path(tmp) / db.name
            if not args.in_place:
                shutil.copyfile(db, work)  # nsys and infraprof see a private copy
            con = sqlite3.connect(f"file:{work}?mode=ro&immutable=1", uri=True)
            count = int(con.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL")
                        .fetchone()[0])
            con.close()
            print(f"{count} kernels")
            results = run_steps(work, Path(args.repo), args.repeat, Path(tmp) / "cache",
                                warm=not args.no_warm, startup=i == 0)
            results.update(export_steps(work, Path(args.repo), Path(tmp) / "cache"))
            lines.append(report(count, work.stat().st_size, results))
    grown = growth(lines)
    if len(lines) > 1:
        print("growth of cold CPU and peak RSS per kernel (1.0 = linear):")
        for g in grown:
            print(f"  {g['kernels']:>10} kernels: CPU {g['cpu_per_kernel_vs_first']:.2f}, "
                  f"RSS {g['rss_per_kernel_vs_first']:.2f}")
    for line in lines[:-1]:
        print(json.dumps(line, sort_keys=True))
    print(json.dumps({**lines[-1], "growth": grown}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
