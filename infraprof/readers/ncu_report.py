"""``.ncu-rep`` reports, read through NVIDIA's ``ncu-report`` wheel (``pip install ncu-report``).

The wheel reads old and new reports without a GPU or an ncu install. It is an optional
dependency (extra ``ncu``); without it :func:`read_ncu_report` raises
:class:`~infraprof.errors.ToolError` (exit 4) with the install command.

Before the wheel sees a file, :func:`check_container` walks the report's block structure
(``NVR\\0`` magic, a length-prefixed ``FileHeader``, then blocks of length-prefixed
``BlockHeader`` + ``PayloadSize`` bytes): the wheel silently returns the complete blocks of a
truncated file, and 0 ranges for garbage, so both are caught here with a clear message.

Values come in base units already (``gpu__time_duration.sum`` in ns). Instanced metrics (the
per-PC PC-sampling stall counters) are read through ``as_double()``, which is the aggregate
over instances. Launch ids number the actions in report order across ranges (as ncu's CSV
``ID`` column does).
"""

from __future__ import annotations

import importlib
import math
import struct
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from infraprof.errors import InputError, ToolError
from infraprof.readers.ncu_metrics import Value, kernel_row, stall_rows
from infraprof.tables_ncu import RULE_TYPES

MAGIC: Final = b"NVR\x00"
INSTALL_HINT: Final = "pip install ncu-report  (or: pip install 'infraprof[ncu]')"


def is_ncu_report(path: Path) -> bool:
    """True when ``path`` starts with the ``.ncu-rep`` magic ``NVR\\0``."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint past end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _payload_size(header: bytes) -> int:
    """Field 5 (``PayloadSize``) of a serialized ``BlockHeader``; 0 when absent."""
    pos, size = 0, 0
    while pos < len(header):
        key, pos = _varint(header, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(header, pos)
            if field == 5:
                size = value
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(header, pos)
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
    if pos != len(header):
        raise ValueError("header overrun")
    return size


def check_container(path: Path) -> int:
    """Number of blocks in a structurally complete report; ``InputError`` otherwise."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise InputError(f"{path}: not an Nsight Compute report (no NVR magic)")
    try:
        pos = len(MAGIC)
        (hsize,) = struct.unpack_from("<I", data, pos)
        pos += 4 + hsize
        blocks = 0
        while pos < len(data):
            (bsize,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if pos + bsize > len(data):
                raise ValueError("block header past end")
            pos += bsize + _payload_size(data[pos:pos + bsize])
            if pos > len(data):
                raise ValueError("payload past end")
            blocks += 1
    except (struct.error, ValueError) as exc:
        raise InputError(
            f"{path}: truncated or corrupt Nsight Compute report ({exc}); copy it again or "
            "re-run the capture"
        ) from exc
    if blocks == 0:
        raise InputError(f"{path}: Nsight Compute report holds no data blocks")
    return blocks


def import_ncu_report() -> ModuleType:
    """The ``ncu_report`` module, or ``ToolError`` (exit 4) with the install command."""
    try:
        return importlib.import_module("ncu_report")
    except ImportError as exc:
        raise ToolError(
            f"reading .ncu-rep files needs NVIDIA's ncu-report package: {INSTALL_HINT}; "
            "or export CSV with `ncu --import R.ncu-rep --csv --page raw`"
        ) from exc


def metric_values(action: Any) -> dict[str, Value]:
    """Every metric of one action: text metrics as ``str``, numbers as ``float`` (aggregate
    over instances), metrics without a value as ``None``."""
    out: dict[str, Value] = {}
    for name in action.metric_names():
        m = action.metric_by_name(name)
        if m is None:
            out[name] = None
            continue
        text = m.as_string()
        if text is not None:
            out[name] = str(text)
            continue
        v = float(m.as_double())
        out[name] = None if math.isnan(v) else v
    return out


def rule_rows(launch_id: int, action: Any) -> list[dict[str, Any]]:
    """:data:`~infraprof.tables_ncu.RULES` rows; results without a message are dropped."""
    rows = []
    for r in action.rule_results_as_dicts():
        msg = r.get("rule_message") or {}
        text = str(msg.get("message") or "").strip()
        if not text:
            continue
        speedup = r.get("speedup_estimation") or {}
        stype = {1: "local", 2: "global"}.get(int(speedup.get("type", 0) or 0))
        value = speedup.get("speedup")
        rows.append({
            "launch_id": launch_id,
            "rule": r.get("rule_identifier"),
            "section": r.get("section_identifier"),
            "type": RULE_TYPES.get(int(msg.get("type", 0) or 0)),
            "title": msg.get("title") or None,
            "message": text,
            "estimated_speedup_pct": None if value is None else float(value),
            "speedup_type": stype,
        })
    return rows


def read_ncu_report(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                         list[dict[str, Any]]]:
    """Rows of the kernel-metrics, stalls and rules tables of ``path``.

    Raises ``InputError`` (exit 3) for a truncated, corrupt, empty or unreadable report and
    ``ToolError`` (exit 4) when the ``ncu-report`` wheel is not installed.
    """
    check_container(path)
    ncu = import_ncu_report()
    try:
        ctx = ncu.load_report(str(path))
        n_ranges = int(ctx.num_ranges())
    except Exception as exc:  # the wheel raises bare RuntimeErrors/ValueErrors
        raise InputError(f"{path}: ncu-report cannot load this report ({exc})") from exc
    if n_ranges == 0:
        raise InputError(
            f"{path}: Nsight Compute report has no profiled ranges (corrupt, or written by a "
            "newer ncu than the installed ncu-report; try `pip install -U ncu-report`)"
        )
    kernels: list[dict[str, Any]] = []
    stalls: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    launch_id = 0
    for i in range(n_ranges):
        rng = ctx.range_by_idx(i)
        for j in range(int(rng.num_actions())):
            action = rng.action_by_idx(j)
            values = metric_values(action)
            raw_name = action.name(action.NameBase_DEMANGLED)
            if raw_name is None or not str(raw_name).strip() or str(raw_name) == "None":
                raise InputError(f"{path}: range {i}, result {j}: the kernel has no name; the "
                                 "report is corrupt, re-run ncu to write it again")
            name = str(raw_name)
            kernels.append(kernel_row(
                launch_id, name, values,
                short_name=str(action.name(action.NameBase_FUNCTION)),
                mangled_name=str(action.name(action.NameBase_MANGLED)),
            ))
            stalls.extend(stall_rows(launch_id, values))
            rules.extend(rule_rows(launch_id, action))
            launch_id += 1
    if not kernels:
        raise InputError(f"{path}: Nsight Compute report holds no profiled kernels")
    return kernels, stalls, rules
