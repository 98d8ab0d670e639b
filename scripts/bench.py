"""Benchmarks: infraprof's nsys reader and analyses against references measured in the same run.

Builds a synthetic nsys-like SQLite export (``--kernels N`` kernels, each with its launch call,
names interned in StringIds, like nsys writes them), then times, each in a fresh process so peak
RSS is per step:

* reference: ``pandas.read_sql`` of the kernel and runtime tables (``SELECT *``), the naive way;
* infraprof: ``read_nsys_sqlite`` (projected columns, StringIds mapped once) — ratio vs reference;
* infraprof: timeline + gap attribution + ranking on the loaded trace.

Prints wall seconds, peak RSS and the ratios. Not a test: nothing is asserted.
Usage: ``python scripts/bench.py [--kernels 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL_COLS = (
    "start INTEGER NOT NULL, end INTEGER NOT NULL, deviceId INTEGER NOT NULL, contextId INTEGER, "
    "streamId INTEGER, correlationId INTEGER, globalPid INTEGER, demangledName INTEGER, "
    "shortName INTEGER, mangledName INTEGER, launchType INTEGER, cacheConfig INTEGER, "
    "registersPerThread INTEGER, gridX INTEGER, gridY INTEGER, gridZ INTEGER, blockX INTEGER, "
    "blockY INTEGER, blockZ INTEGER, staticSharedMemory INTEGER, dynamicSharedMemory INTEGER, "
    "localMemoryPerThread INTEGER, localMemoryTotal INTEGER, gridId INTEGER, "
    "sharedMemoryExecuted INTEGER, graphNodeId INTEGER, sharedMemoryLimitConfig INTEGER"
)
RUNTIME_COLS = ("start INTEGER NOT NULL, end INTEGER NOT NULL, eventClass INTEGER, "
                "globalTid INTEGER, correlationId INTEGER, nameId INTEGER, returnValue INTEGER, "
                "callchainId INTEGER")


def build(path: Path, n: int) -> None:
    rng = random.Random(7)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE StringIds(id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("CREATE TABLE EXPORT_META_DATA(name TEXT, value TEXT)")
    con.execute(f"CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL({KERNEL_COLS})")
    con.execute(f"CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME({RUNTIME_COLS})")
    names = [f"void kernel_{i}<float, {i % 7}>(float*, int)" for i in range(200)]
    con.executemany("INSERT INTO StringIds VALUES (?, ?)",
                    [(i + 1, s) for i, s in enumerate([*names, "cudaLaunchKernel_v7000"])])
    con.execute("INSERT INTO EXPORT_META_DATA VALUES ('EXPORT_SCHEMA_VERSION', '3.0.0')")
    gtid = (1 << 48) | (4242 << 24) | 4242
    gpid = gtid & ~0xFFFFFF
    t = 1_000_000
    krows, rrows = [], []
    for i in range(n):
        api = rng.randint(2_000, 6_000)
        gap = rng.choice((500, 2_000, 20_000, 200_000)) if i % 50 == 0 else rng.randint(0, 3_000)
        dur = rng.randint(2_000, 80_000)
        rrows.append((t, t + api, 0, gtid, i + 1, 201, 0, None))
        start = t + api + rng.randint(500, 2_000)
        name = 1 + (i % 200)
        krows.append((start, start + dur, 0, 1, 7, i + 1, gpid, name, name, None, 1, 0, 32,
                      128, 1, 1, 256, 1, 1, 0, 0, 0, 0, i, 0, 0, 0))
        t = start + dur + gap
        if len(krows) >= 200_000:
            con.executemany(f"INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES ({','.join('?' * 27)})",
                            krows)
            con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?,?,?,?,?,?,?,?)",
                            rrows)
            krows, rrows = [], []
    con.executemany(f"INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES ({','.join('?' * 27)})",
                    krows)
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?,?,?,?,?,?,?,?)", rrows)
    con.commit()
    con.close()


STEPS = {
    "reference: pandas.read_sql SELECT *": """
import sqlite3, pandas as pd
con = sqlite3.connect(PATH)
k = pd.read_sql("SELECT * FROM CUPTI_ACTIVITY_KIND_KERNEL", con)
r = pd.read_sql("SELECT * FROM CUPTI_ACTIVITY_KIND_RUNTIME", con)
s = pd.read_sql("SELECT * FROM StringIds", con)
k = k.merge(s, left_on="demangledName", right_on="id")
""",
    "infraprof: read_nsys_sqlite": """
from pathlib import Path
from infraprof.readers.nsys_sqlite import read_nsys_sqlite
read_nsys_sqlite(Path(PATH))
""",
    "infraprof: load + timeline + attribution + ranking": """
from pathlib import Path
from infraprof.inputs import load_trace
from infraprof.ranking import build_report
build_report(load_trace(Path(PATH))).to_dict()
""",
}

RUNNER = """
import json, resource, sys, time
PATH = sys.argv[1]
t0 = time.perf_counter()
exec(sys.argv[2])
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(path: Path, code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", RUNNER, str(path), code], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        t0 = time.perf_counter()
        build(db, args.kernels)
        print(f"synthetic export: {args.kernels} kernels + launches, "
              f"{db.stat().st_size / 2**20:.0f} MiB, built in {time.perf_counter() - t0:.1f} s")
        results = {name: measure(db, code) for name, code in STEPS.items()}
    ref = results["reference: pandas.read_sql SELECT *"]
    print(f"{'step':52} {'wall s':>8} {'peak MiB':>9} {'time ×ref':>10} {'mem ×ref':>9}")
    for name, r in results.items():
        print(f"{name:52} {r['wall_s']:8.2f} {r['peak_rss_mib']:9.0f} "
              f"{r['wall_s'] / ref['wall_s']:10.2f} {r['peak_rss_mib'] / ref['peak_rss_mib']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
