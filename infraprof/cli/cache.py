"""``infraprof cache``: inspect or clear infraprof's cache (SQLite exports of reports, the
columnar tables of analysed exports, cached analysis results, inflated ``.gz`` inputs). Only
infraprof's own sub-folders are touched."""

from __future__ import annotations

import typer

cache_app = typer.Typer(
    no_args_is_help=True,
    help="Inspect or clear infraprof's cache.\n\n"
    "The folder: `$INFRAPROF_CACHE_DIR`, else `$XDG_CACHE_HOME/infraprof`, else "
    "`~/.cache/infraprof`. It holds SQLite exports of reports (`sqlite/`), columnar tables of "
    "analysed exports (`tables/`), inflated `.gz` inputs (`inflated/`) and analysis results "
    "(`results/`: the `analyze -f json` output and gate metrics of unchanged exports, at most "
    "512 MiB, least recently used first out). `analyze --no-cache` uses none of them; "
    "`INFRAPROF_RESULT_CACHE=0` turns off only the result cache, for every command.")

_SUBDIRS = ("tables", "sqlite", "inflated", "results")


@cache_app.command("info")
def cache_info() -> None:
    """Print the cache folder, its entries and their sizes."""
    from infraprof import result_cache
    from infraprof.cache_paths import cache_dir
    from infraprof.readers.columnar_cache import cache_entries

    root = cache_dir()
    entries = cache_entries()
    exports = sorted((root / "sqlite").glob("*.sqlite")) if (root / "sqlite").is_dir() else []
    results = result_cache.entries()
    sizes = (sum(size for _, size in entries), sum(p.stat().st_size for p in exports),
             sum(size for _, size, _ in results))
    print(f"cache: {root}")
    print(f"columnar tables: {len(entries)} entries, {sizes[0] / 2**20:.1f} MiB")
    print(f"report exports: {len(exports)} files, {sizes[1] / 2**20:.1f} MiB")
    print(f"analysis results: {len(results)} entries, {sizes[2] / 2**20:.1f} MiB "
          f"(at most {result_cache.MAX_TOTAL_BYTES / 2**20:.0f} MiB)")
    print(f"total: {sum(sizes) / 2**20:.1f} MiB")


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every cached export, table and result (the folder itself is kept)."""
    import shutil

    from infraprof.cache_paths import cache_dir

    root = cache_dir()
    removed = 0
    for name in _SUBDIRS:
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            removed += sum(1 for _ in folder.iterdir())
            shutil.rmtree(folder)
    print(f"cache: removed {removed} entries from {root}")
