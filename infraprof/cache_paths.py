"""Where infraprof keeps its caches (a module of its own so that finding the folder imports
nothing else: the result-cache hit path of ``analyze`` starts from it)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder: ``$INFRAPROF_CACHE_DIR``, else ``$XDG_CACHE_HOME/infraprof``, else
    ``~/.cache/infraprof``. It holds ``sqlite/`` (exports of reports), ``tables/`` (the
    columnar table cache), ``results/`` (the result cache) and ``inflated/`` (``.gz`` inputs)."""
    base = os.environ.get("INFRAPROF_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "infraprof"
