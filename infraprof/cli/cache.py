"""``infraprof cache``: inspect or clear infraprof's cache (SQLite exports of reports, the
columnar tables of analysed exports, inflated ``.gz`` inputs). Only infraprof's own sub-folders
are touched."""

from __future__ import annotations

import typer

cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear infraprof's cache.")

_SUBDIRS = ("tables", "sqlite", "inflated")


@cache_app.command("info")
def cache_info() -> None:
    """Print the cache folder, its entries and their sizes."""
    from infraprof.readers.columnar_cache import cache_entries
    from infraprof.readers.nsys_report import cache_dir

    root = cache_dir()
    entries = cache_entries()
    exports = sorted((root / "sqlite").glob("*.sqlite")) if (root / "sqlite").is_dir() else []
    total = sum(size for _, size in entries) + sum(p.stat().st_size for p in exports)
    print(f"cache: {root}")
    print(f"columnar tables: {len(entries)} entries, "
          f"{sum(size for _, size in entries) / 2**20:.1f} MiB")
    print(f"report exports: {len(exports)} files, "
          f"{sum(p.stat().st_size for p in exports) / 2**20:.1f} MiB")
    print(f"total: {total / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every cached export and columnar table (the folder itself is kept)."""
    import shutil

    from infraprof.readers.nsys_report import cache_dir

    root = cache_dir()
    removed = 0
    for name in _SUBDIRS:
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            removed += sum(1 for _ in folder.iterdir())
            shutil.rmtree(folder)
    print(f"cache: removed {removed} entries from {root}")
