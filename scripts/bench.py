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
* ``nsys stats``: ``nsys stats -r gpukernsum`` on the same file (when nsys is installed);
* ``cold``: ``infraprof analyze FILE -f json`` with an empty cache dir;
* ``warm``: the same again, its columnar cache filled by the cold run;
* ``--help`` and ``analyze`` of a small sample trace (start-up cost);
* ``export perfetto``: ``infraprof export FILE -o X.perfetto-trace`` (and ``export 1 step``
  with ``--window step:2``), with the file size.

Prints a table (wall and CPU seconds, peak RSS), the ratios and one JSON line (``{"bench": ...}``,
with the 1-minute load average: on a shared machine compare CPU seconds). Nothing is asserted.
Usage: ``python scripts/bench.py [--kernels N]`` (or ``BENCH_KERNELS=N make bench``).
"""

from __future__ import annotations

import argparse
import gzip
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
import sqlite3, sys, numpy as np
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro&immutable=1", uri=True)
def read(sql):
    rows = con.execute(sql).fetchall()
    return np.array(rows, dtype=np.int64)
k = read("SELECT start, end, deviceId, streamId, correlationId, globalPid, demangledName, "
         "shortName FROM CUPTI_ACTIVITY_KIND_KERNEL")
r = read("SELECT start, end, globalTid, correlationId, nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME")
print(len(k), len(r))
"""


def measure(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``argv`` to completion; wall and CPU seconds and peak RSS (MiB) of that process
    tree. It runs in ``env["PYTHONPATH"]`` (else here): ``python -m`` puts its working directory
    first on ``sys.path``, so this is what makes ``--repo`` choose the checkout measured."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})},
                            cwd=(env or {}).get("PYTHONPATH") or None)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({proc.returncode}): "
                         f"{err.decode(errors='replace')[-2000:]}")
    return {"wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def best(argv: list[str], repeat: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Median wall time of ``repeat`` runs (and the peak RSS of that run)."""
    runs = sorted((measure(argv, env) for _ in range(repeat)), key=lambda r: r["wall_s"])
    return runs[len(runs) // 2]


def run_steps(db: Path, repo: Path, repeat: int, cache: Path, warm: bool = True
              ) -> dict[str, dict[str, float]]:
    py = sys.executable
    env = {"PYTHONPATH": str(repo), "INFRAPROF_CACHE_DIR": str(cache), "CI": "true"}
    infraprof = [py, "-m", "infraprof"]
    results = {"bare read": best([py, "-c", BARE_READ, str(db)], repeat)}
    nsys = os.environ.get("INFRAPROF_NSYS") or shutil.which("nsys")
    if nsys:
        results["nsys stats"] = best([nsys, "stats", "-q", "-r", "gpukernsum", str(db)], repeat)
    colds = []
    for _ in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        colds.append(measure([*infraprof, "analyze", str(db), "-f", "json"], env))
    results["infraprof cold"] = sorted(colds, key=lambda r: r["wall_s"])[len(colds) // 2]
    if warm:
        results["infraprof warm"] = best([*infraprof, "analyze", str(db), "-f", "json"], repeat,
                                         env)
    results["infraprof --help"] = best([*infraprof, "--help"], repeat, env)
    if SMALL_TRACE.is_file():
        results["small trace"] = best([*infraprof, "analyze", str(SMALL_TRACE), "-f", "json"],
                                      repeat, env)
    return results


def export_steps(db: Path, repo: Path, cache: Path) -> dict[str, dict[str, float]]:
    """``infraprof export`` of the whole file to Perfetto protobuf and of one NVTX step
    (``--window step:2``), after the analyze runs (same cache); ``file_mib`` per step."""
    env = {"PYTHONPATH": str(repo), "INFRAPROF_CACHE_DIR": str(cache), "CI": "true"}
    out: dict[str, dict[str, float]] = {}
    for name, extra in (("export perfetto", []), ("export 1 step", ["--window", "step:2"])):
        target = db.with_name(f"{name.replace(' ', '-')}.perfetto-trace")
        out[name] = measure([sys.executable, "-m", "infraprof", "export", str(db), "-o",
                             str(target), *extra], env)
        out[name]["file_mib"] = round(target.stat().st_size / 2**20, 1)
        target.unlink()
    return out


def report(kernels: int, size: int, results: dict[str, dict[str, float]]) -> dict[str, object]:
    print(f"{'step':18} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
    for name, r in results.items():
        print(f"{name:18} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_mib']:9.0f}")
    cold = results["infraprof cold"]
    warm = results.get("infraprof warm", cold)
    ratios = {"cold_vs_bare_read": cold["wall_s"] / results["bare read"]["wall_s"],
              "warm_vs_cold": warm["wall_s"] / cold["wall_s"]}
    if "nsys stats" in results:
        ratios["cold_vs_nsys_stats"] = cold["wall_s"] / results["nsys stats"]["wall_s"]
        ratios["warm_vs_nsys_stats"] = warm["wall_s"] / results["nsys stats"]["wall_s"]
    if "nsys stats" in results:
        ratios["cold_cpu_vs_nsys_stats_cpu"] = cold["cpu_s"] / max(results["nsys stats"]["cpu_s"],
                                                                   1e-3)
    for name, value in ratios.items():
        print(f"{name:22} {value:6.2f}x")
    line = {"bench": "infraprof", "kernels": kernels, "file_mib": round(size / 2**20, 1),
            "steps": results, "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "rss_bytes_per_kernel": round(cold["peak_rss_mib"] * 2**20 / max(kernels, 1)),
            "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    print(json.dumps(line, sort_keys=True))
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=int,
                    default=int(os.environ.get("BENCH_KERNELS", "1000000")))
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
    args = ap.parse_args()
    source = _source(args.source)
    base = sqlite3.connect(f"file:{source}?mode=ro", uri=True) if source.suffix != ".gz" else None
    per_copy = (int(base.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0])
                if base else 28_674)
    if base:
        base.close()
    copies = max(1, -(-args.kernels // max(per_copy, 1)))
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "-samples" if args.with_samples else ""
    db = folder / f"{source.name.split('.')[0]}-x{copies}{suffix}.sqlite"
    t0 = time.perf_counter()
    if not db.is_file():
        build(source, db, copies, args.with_samples)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    kernels = int(con.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0])
    con.close()
    print(f"real-derived export: {source.name} x{copies} = {kernels} kernels, "
          f"{db.stat().st_size / 2**20:.0f} MiB ({time.perf_counter() - t0:.1f} s to prepare)")
    with tempfile.TemporaryDirectory(prefix="infraprof-bench-") as tmp:
        work = Path(tmp) / db.name
        shutil.copyfile(db, work)  # nsys and infraprof see a private copy
        results = run_steps(work, Path(args.repo), args.repeat, Path(tmp) / "cache",
                            warm=not args.no_warm)
        results.update(export_steps(work, Path(args.repo), Path(tmp) / "cache"))
        report(kernels, work.stat().st_size, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
