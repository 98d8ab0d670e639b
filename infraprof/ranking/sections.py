"""The report's content in a format-neutral shape: a header, ranked evidence and a list of
:class:`Section` tables that the terminal, Markdown and HTML renderers lay out.

A section holds *raw* cell values (``int``/``float``/``str``/``None``) and typed columns; each
renderer turns a value into text with :func:`format_cell` (by the column's :data:`CellKind`)
and escapes it for its format in one place. Everything here is computed from the
:class:`~infraprof.ranking.Report` (and the analyses it ran), never in a renderer.

Sections, in order (a section is left out when it has nothing to show):

* ``findings``: ranked findings (top ``top``), with the GPU idle split by cause as a note;
* ``devices``: GPU busy / idle per device over its active span;
* ``kernels``, ``api``, ``nvtx``: top ``top`` kernels, CUDA API calls and NVTX ranges by total
  time (``time %`` = share of the table's total); a kernel name longer than
  :data:`LONG_NAME` characters is shown by its short name (the JSON keeps both);
* ``launch``: per kernel (most launched first), kernel, launch call and queue averages, with
  the launch-latency percentiles of all launches as a note;
* ``memory``: GPU memory operations per kind; ``copies``: achieved bandwidth of copies of at
  least 1 MB per direction against the PCIe reference;
* ``python_ranges``, ``python_frames``: py-spy frames per NVTX range and over all samples;
* ``idle_stacks``: the most common nsys CPU-sampling stacks taken while a GPU was idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import pandas as pd

from infraprof.analyses import cpu_stacks
from infraprof.analyses.copies import CopyParams
from infraprof.analyses.findings import Finding
from infraprof.collapsed import collapsed_counts
from infraprof.ranking.host_sections import (
    host_profile_section,
    iterations,
    per_iteration_ns,
    phases_section,
    steady_findings,
)
from infraprof.ranking.report import Report
from infraprof.units import fmt_bytes, fmt_ns, fmt_pct, fmt_rate

CellKind = Literal["text", "int", "ns", "bytes", "pct", "rate"]
Align = Literal["left", "right"]
Cell = str | int | float | None

LONG_NAME = 90
STACK_FRAMES = 6


@dataclass(frozen=True)
class Column:
    """One column: its header, how its values are formatted (``kind``: text as is, ``int``,
    ``ns`` durations, ``bytes``, ``pct`` shares 0–1, ``rate`` bytes/s) and aligned, and two
    hints for narrow outputs: ``wide`` takes the spare width (long names) and text longer than
    ``max_chars`` may be cut."""

    name: str
    kind: CellKind = "text"
    align: Align = "left"
    wide: bool = False
    max_chars: int | None = None


def column(name: str, kind: CellKind = "text", *, wide: bool = False,
           max_chars: int | None = None) -> Column:
    """A column aligned by its kind: text left, numbers right."""
    return Column(name, kind, "left" if kind == "text" else "right", wide, max_chars)


@dataclass(frozen=True)
class Section:
    """One table: ``rows`` of raw cells (one per column) and prose ``notes`` shown after it.
    A section without rows shows only its title and notes. ``key`` names it for tests and
    anchors; the ``title`` is what every format prints."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Header:
    """What the report is about: input, tool versions, span and GPUs."""

    source: str
    name: str
    nsys_version: str
    schema_version: str
    span_ns: int
    command: str | None
    gpus_used: tuple[str, ...]
    gpus_in_node: int
    busy_ns: int
    active_span_ns: int
    has_gpu_activity: bool
    headline: str | None = None  # e.g. the GPU-bound verdict, shown under the header
    producer: tuple[str, ...] = ()  # what wrote the trace: ("nsys 2022.4", "export schema 3")

    @property
    def busy_share(self) -> float:
        """GPU busy time over the devices' summed active spans (0 without GPU activity)."""
        return self.busy_ns / self.active_span_ns if self.active_span_ns else 0.0


def format_cell(value: Cell, kind: CellKind) -> str:
    """``value`` as plain (unescaped) text for a ``kind`` column; ``None`` is ``-``."""
    if value is None:
        return "-"
    if isinstance(value, str) or kind == "text":
        return str(value)
    if kind == "ns":
        return fmt_ns(value)
    if kind == "bytes":
        return fmt_bytes(value)
    if kind == "pct":
        return fmt_pct(float(value))
    if kind == "rate":
        return fmt_rate(float(value))
    return str(int(value))  # "int"


def report_header(report: Report) -> Header:
    """The :class:`Header` of ``report``."""
    meta = report.trace.meta
    used = report.trace.used_gpus()
    gpus = tuple(f"[{d}] {n}" for d, n in zip(used["device_id"], used["name"], strict=True))
    return Header(
        source=meta.source, name=PurePath(meta.source.replace("\\", "/")).name,
        nsys_version=meta.nsys_version or "?", schema_version=meta.schema_version or "?",
        span_ns=report.span_ns, command=meta.capture_command or None, gpus_used=gpus,
        gpus_in_node=len(report.trace.gpus), busy_ns=report.gpu_busy_ns,
        active_span_ns=sum(d.span_ns for d in report.devices),
        has_gpu_activity=report.trace.has_gpu_activity, headline=gpu_bound_headline(report),
        producer=tuple(meta.producer))


def gpu_bound_headline(report: Report) -> str | None:
    """``GPU-bound: …`` when the GPUs are busy at least the GPU-bound share of their span."""
    verdict = report.analysis.gpu_bound if report.analysis else None
    if not verdict or not verdict["gpu_bound"]:
        return None
    return (f"GPU-bound: the GPUs are busy {fmt_pct(verdict['busy_share'])} of their active "
            f"span (threshold {fmt_pct(verdict['threshold'])}); the time is in the kernels, so "
            "kernel-level findings lead.")


def ranked(report: Report, top: int) -> list[tuple[int, Finding]]:
    """The first ``top`` steady-state findings (and those without a phase) with their rank
    (1 = largest impact), as the findings table numbers them: evidence blocks use the same
    numbers. Start-up and teardown costs are listed in the phases section."""
    return list(enumerate(steady_findings(report)[:top], 1))


def report_sections(report: Report, top: int) -> list[Section]:
    """Every table of the report, in display order (see the module docstring). The host CPU
    profile leads when the trace has no GPU activity (it is then what the report is about),
    else it follows the Python sections."""
    host = host_profile_section(report, top)
    cpu_only = not report.trace.has_gpu_activity
    built = [host if cpu_only else None, _findings(report, top), _devices(report),
             _kernels(report, top), _kernel_classes(report), _api(report, top),
             _launch(report, top), _memory(report), _copies(report), _nvtx(report, top),
             phases_section(report, top), *_python(report, top),
             None if cpu_only else host, _idle_stacks(report, top)]
    return [s for s in built if s is not None]


def _share(part: Any, total: float) -> float:
    return float(part) / total if total else 0.0


def _idle_note(report: Report) -> tuple[str, ...]:
    a = report.analysis
    total = sum(a.idle_breakdown_ns.values()) if a else 0
    if a is None or total <= 0:
        return ()
    parts = [f"{k} {fmt_pct(v / total)}" for k, v in sorted(
        a.idle_breakdown_ns.items(), key=lambda kv: -kv[1]) if v > 0]
    return (f"GPU idle by cause ({fmt_ns(total)} in {a.gaps_attributed} gaps): "
            + ", ".join(parts),)


def _findings(report: Report, top: int) -> Section:
    """Ranked steady-state findings; with known iterations, each one's cost per iteration."""
    per_iter = iterations(report) is not None
    columns = (column("#", "int"), column("impact", "ns"),
               *((column("per iter", "ns"),) if per_iter else ()), column("share", "pct"),
               column("severity"), column("category"), column("title", wide=True))
    title = "Ranked findings (impact = estimated recoverable GPU time)"
    if not ranked(report, top):
        return Section("findings", title, columns, notes=("No findings.",))
    rows: list[tuple[Cell, ...]] = [
        (i, f.impact_ns, *((per_iteration_ns(report, f),) if per_iter else ()), f.share,
         f.severity, f.category, f.title) for i, f in ranked(report, top)]
    return Section("findings", title, columns, rows, _idle_note(report))


def _devices(report: Report) -> Section | None:
    if not report.devices:
        return None
    columns = (column("device"), column("span", "ns"), column("busy", "ns"),
               column("busy %", "pct"), column("idle", "ns"), column("kernels", "ns"),
               column("memcpy", "ns"), column("ops", "int"))
    rows: list[tuple[Cell, ...]] = [
        (f"[{d.device_id}] {d.name}", d.span_ns, d.busy_ns, _share(d.busy_ns, d.span_ns),
         d.idle_ns, d.kernel_ns, d.memcpy_ns, d.ops) for d in report.devices]
    return Section("devices", "GPU busy / idle (over each device's active span)", columns, rows)


def _display_name(name: str, short: object) -> str:
    return str(short) if len(name) > LONG_NAME and isinstance(short, str) and short else name


def _kernels(report: Report, top: int) -> Section | None:
    k = report.kernels
    if k.empty:
        return None
    total = float(k["total_ns"].sum())
    columns = (column("time %", "pct"), column("total", "ns"), column("count", "int"),
               column("avg", "ns"), column("median", "ns"), column("min", "ns"),
               column("max", "ns"), column("name", wide=True, max_chars=LONG_NAME))
    rows: list[tuple[Cell, ...]] = [
        (_share(r.total_ns, total), int(r.total_ns), int(r.count), float(r.avg_ns),
         float(r.median_ns), int(r.min_ns), int(r.max_ns),
         _display_name(str(r.name), r.short_name)) for r in k.head(top).itertuples()]
    return Section("kernels", f"Top kernels by GPU time ({len(rows)} of {len(k)})", columns,
                   rows)


def _kernel_classes(report: Report) -> Section | None:
    """Kernel time per class per device (from names), with communication overlap notes."""
    per_device = report.analysis.kernel_classes if report.analysis else []
    if not per_device:
        return None
    columns = (column("device", "int"), column("class"), column("time", "ns"),
               column("time %", "pct"), column("count", "int"))
    rows: list[tuple[Cell, ...]] = [
        (d["device_id"], c["class"], c["total_ns"], c["share"], c["count"])
        for d in per_device for c in d["classes"]]
    comm = report.analysis.communication if report.analysis else []
    notes = tuple(f"Communication on device {c['device_id']}: {fmt_ns(c['comm_ns'])}, "
                  f"{fmt_pct(c['overlap_ratio'])} overlapped with compute, "
                  f"{fmt_ns(c['exposed_ns'])} exposed" for c in comm)
    return Section("kernel_classes", "Kernel classes (GPU time per class, from kernel names)",
                   columns, rows, notes)


def _api(report: Report, top: int) -> Section | None:
    a = report.api_calls
    if a.empty:
        return None
    total = float(a["total_ns"].sum())
    columns = (column("time %", "pct"), column("total", "ns"), column("calls", "int"),
               column("avg", "ns"), column("median", "ns"), column("max", "ns"),
               column("name", wide=True, max_chars=LONG_NAME))
    rows: list[tuple[Cell, ...]] = [
        (_share(r.total_ns, total), int(r.total_ns), int(r.count), float(r.avg_ns),
         float(r.median_ns), int(r.max_ns), str(r.name)) for r in a.head(top).itertuples()]
    return Section("api", f"CUDA API calls ({len(rows)} of {len(a)})", columns, rows)


def _memory(report: Report) -> Section | None:
    m = report.memcpy
    if m.empty:
        return None
    columns = (column("operation"), column("count", "int"), column("total time", "ns"),
               column("bytes", "bytes"), column("avg size", "bytes"),
               column("achieved", "rate"))
    rows: list[tuple[Cell, ...]] = [
        (str(r["operation"]), int(r["count"]), int(r["total_ns"]), float(r["bytes"]),
         float(r["avg_bytes"]), _opt_float(r["throughput_bytes_per_s"]))
        for r in m.to_dict("records")]
    return Section("memory", "GPU memory operations", columns, rows)


def _launch(report: Report, top: int) -> Section | None:
    a = report.analysis
    per_kernel = a.launch_summary if a else pd.DataFrame()
    if a is None or per_kernel.empty:
        return None
    columns = (column("launches", "int"), column("kernel avg", "ns"),
               column("launch call avg", "ns"), column("queue avg", "ns"),
               column("name", wide=True, max_chars=LONG_NAME))
    rows: list[tuple[Cell, ...]] = [
        (int(r.count), float(r.kernel_avg_ns), float(r.api_avg_ns),
         _opt_float(r.queue_avg_ns), str(r.name)) for r in per_kernel.head(top).itertuples()]
    pct = a.launch_percentiles
    note = (f"All launches: launch call to kernel start P50 {fmt_ns(pct.get('latency_p50_ns'))}, "
            f"P99 {fmt_ns(pct.get('latency_p99_ns'))}; launch call P50 "
            f"{fmt_ns(pct.get('api_p50_ns'))}, P99 {fmt_ns(pct.get('api_p99_ns'))}. Queue: "
            "launch call end to kernel start (negative times left out).")
    return Section("launch", f"Kernel launches ({len(rows)} of {len(per_kernel)} kernels, most "
                   "launched first)", columns, rows, (note,))


def _copies(report: Report) -> Section | None:
    a = report.analysis
    rows: list[tuple[Cell, ...]] = [
        (str(b["direction"]), int(b["copies"]), int(b["bytes"]),
         float(b["achieved_bytes_per_s"]), b["reference_bytes_per_s"], b["share_of_reference"])
        for b in (a.copy_bandwidth if a else [])]
    if a is None or not rows:
        return None
    columns = (column("direction"), column("copies", "int"), column("bytes", "bytes"),
               column("achieved", "rate"), column("reference", "rate"),
               column("of reference", "pct"))
    floor = fmt_bytes(a.context.params_of("copies", CopyParams()).min_bw_bytes)
    return Section("copies", f"Copy bandwidth (copies of at least {floor})", columns, rows)


def _opt_float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _nvtx(report: Report, top: int) -> Section | None:
    n = report.nvtx
    if n.empty:
        return None
    columns = (column("total", "ns"), column("count", "int"), column("median", "ns"),
               column("p90", "ns"), column("p99", "ns"), column("max", "ns"),
               column("domain", max_chars=20), column("name", wide=True, max_chars=60))
    rows: list[tuple[Cell, ...]] = [
        (int(r.total_ns), int(r.count), float(r.median_ns), float(r.p90_ns), float(r.p99_ns),
         int(r.max_ns), str(r.domain) if r.domain else "-", str(r.name))
        for r in n.head(top).itertuples()]
    return Section("nvtx", f"NVTX ranges ({len(rows)} of {len(n)})", columns, rows)


def _python(report: Report, top: int) -> list[Section]:
    py = report.analysis.python if report.analysis else None
    if py is None:
        return []
    notes = [f"Alignment error to the nsys timeline: {fmt_ns(py.alignment_error_ns)}"
             ] if py.alignment_error_ns is not None else []
    notes += [f"note: {note}" for note in py.notes]
    ranges: list[tuple[Cell, ...]] = [(str(r.get("name", "?")), ", ".join(
        f"{f.get('frame', '?')} {fmt_pct(f.get('share'))}" for f in r.get("frames", [])[:3])
        or str(r.get("refused") or "-")) for r in py.ranges[:top]]
    title = "Python frames per NVTX range (py-spy)" if ranges else "Python (py-spy)"
    out = [Section("python_ranges", title,
                   (column("NVTX range"), column("top frames", wide=True)), ranges,
                   tuple(notes))] if ranges or notes else []
    frames: list[tuple[Cell, ...]] = [(str(f.get("frame", "?")), f.get("share"))
                                      for f in py.aggregate[:top]]
    if frames:
        out.append(Section("python_frames", "Python frames (all samples)",
                           (column("frame", wide=True), column("share", "pct")), frames))
    return out


def _idle_stacks(report: Report, top: int) -> Section | None:
    timelines = report.analysis.timelines if report.analysis else []
    if report.trace.cpu_samples.empty or not timelines:
        return None
    threads = cpu_stacks.thread_stacks(report.trace, timelines, idle_only=True)
    counts = collapsed_counts(cpu_stacks.stack_counts(threads))
    if not counts:
        return None
    total = sum(counts.values())
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    rows: list[tuple[Cell, ...]] = [
        (n, n / total, " ← ".join(reversed(key.split(";")[-STACK_FRAMES:]))) for key, n in best]
    note = (f"{total} samples taken while a GPU was idle; leaf first, last six frames. "
            "All stacks: infraprof export --to speedscope --idle-only")
    return Section("idle_stacks", "Host CPU stacks during GPU idle (nsys sampling)",
                   (column("samples", "int"), column("share", "pct"),
                    column("stack (leaf ← root)", wide=True)), rows, (note,))


__all__: Sequence[str] = ("Cell", "CellKind", "Column", "Header", "Section", "column",
                          "format_cell", "ranked", "report_header", "report_sections")
