"""nsys enumerations, read from ``ENUM_*`` tables when present, else built-in fallbacks; and
the classes of CUDA API names (also used for PyTorch profiler traces).

Schema 2.9.1 exports carry no ``ENUM_*`` tables; the fallbacks are the values NVIDIA documents
(``reference/nsys.md`` section 5). ``syncType`` labels are deliberately *not* trusted: syncs are
classified by the API call they join to (see ``nsys_sqlite``).
"""

from __future__ import annotations

import re
from typing import Final

from infraprof.readers.sqlite_db import SqliteFile

API_SUFFIX_RE = re.compile(r"_v\d{4,5}$")

MEMCPY_OPER: Final[dict[int, str]] = {
    0: "Unknown", 1: "HtoD", 2: "DtoH", 3: "HtoA", 4: "AtoH", 5: "AtoA", 6: "AtoD", 7: "DtoA",
    8: "DtoD", 9: "HtoH", 10: "PtoP", 11: "UVM HtoD", 12: "UVM DtoH", 13: "UVM DtoD",
}

MEM_KIND: Final[dict[int, str]] = {
    0: "Pageable", 1: "Pinned", 2: "Device", 3: "Array", 4: "Managed", 5: "Device Static",
    6: "Managed Static", 7: "Unknown",
}

_MEMCPY_LABELS: Final[dict[str, str]] = {
    "CUDA memcpy Host-to-Device": "HtoD",
    "CUDA memcpy Device-to-Host": "DtoH",
    "CUDA memcpy Device-to-Device": "DtoD",
    "CUDA memcpy Host-to-Host": "HtoH",
    "CUDA memcpy Peer-to-Peer": "PtoP",
}


def memcpy_kinds(db: SqliteFile) -> dict[int, str]:
    """copyKind id -> short direction name (``HtoD``, ``DtoH``, ...)."""
    names = dict(MEMCPY_OPER)
    if "ENUM_CUDA_MEMCPY_OPER" in db.tables and db.has_column("ENUM_CUDA_MEMCPY_OPER", "name"):
        for ident, name in db.query("SELECT id, name FROM ENUM_CUDA_MEMCPY_OPER"):
            text = str(name)
            for prefix in ("CUDA_MEMCPY_KIND_", "CUPTI_ACTIVITY_MEMCPY_KIND_"):
                text = text.removeprefix(prefix)
            if int(ident) not in names:
                names[int(ident)] = _MEMCPY_LABELS.get(text, text)
    return names


def mem_kinds(db: SqliteFile) -> dict[int, str]:
    """Memory kind id -> label (``Pageable``, ``Pinned``, ``Device``, ...)."""
    names = dict(MEM_KIND)
    if "ENUM_CUDA_MEM_KIND" in db.tables and db.has_column("ENUM_CUDA_MEM_KIND", "label"):
        for ident, label in db.query("SELECT id, label FROM ENUM_CUDA_MEM_KIND"):
            names.setdefault(int(ident), str(label))
    return names


def strip_api_suffix(name: str) -> str:
    """``cudaLaunchKernel_v7000`` -> ``cudaLaunchKernel``; ``cuMemcpyHtoDAsync_v2`` unchanged."""
    return API_SUFFIX_RE.sub("", name)


def api_family(name: str) -> str:
    """``runtime`` for ``cuda*`` names, ``driver`` for ``cu*``, else ``other``."""
    if name.startswith("cuda"):
        return "runtime"
    if name.startswith("cu"):
        return "driver"
    return "other"


def sync_kind(api_name: str | None) -> str | None:
    """Classify a synchronizing API call by name (runtime or driver spelling)."""
    if api_name is None:
        return None
    n = api_name.lower()
    if "streamwaitevent" in n:
        return "stream_wait_event"
    if "eventsynchronize" in n or "eventquery" in n:
        return "event"
    if "streamsynchronize" in n or "streamquery" in n:
        return "stream"
    if "ctxsynchronize" in n or "devicesynchronize" in n:
        return "context"
    return "other"
