"""Transparent gzip: a ``.sqlite.gz``/``.json.gz`` (any gzip, by magic) is inflated once into
infraprof's cache and read from there; the compressed input is never modified.

Cache: ``<cache dir>/inflated/<name>-<key>`` with the cache directory of
:func:`infraprof.cache_paths.cache_dir` (``$INFRAPROF_CACHE_DIR``, else
``$XDG_CACHE_HOME/infraprof``, else ``~/.cache/infraprof``); the key hashes the input's absolute
path, size and mtime. The copy is streamed into a temporary file in the same directory and
renamed into place, so a cached copy is always complete.

Bound: an input that inflates to more than :func:`max_inflated_bytes` (default 8 GiB,
``$INFRAPROF_MAX_INFLATED_BYTES`` in bytes to change it) is refused with exit 3 before more is
written, so a gzip bomb cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, Final

from infraprof.cache_paths import cache_dir
from infraprof.errors import InputError, UsageError

MAX_INFLATED_BYTES: Final = 8 << 30
MAX_INFLATED_ENV: Final = "INFRAPROF_MAX_INFLATED_BYTES"
_CHUNK_BYTES: Final = 1 << 20


def max_inflated_bytes() -> int:
    """The inflation limit in bytes: ``$INFRAPROF_MAX_INFLATED_BYTES`` or 8 GiB."""
    text = os.environ.get(MAX_INFLATED_ENV, "").strip()
    if not text:
        return MAX_INFLATED_BYTES
    if not text.isdigit():
        raise UsageError(f"{MAX_INFLATED_ENV}={text!r}: give a whole number of bytes")
    return int(text)


def inflated_name(path: Path) -> str:
    """``run.sqlite.gz`` -> ``run.sqlite``; a name without ``.gz`` gets ``.inflated``."""
    name = path.name
    return name[:-3] if name.lower().endswith(".gz") and len(name) > 3 else name + ".inflated"


def _cache_path(path: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    digest = hashlib.sha256(key).hexdigest()[:20]
    inner = Path(inflated_name(path))
    return cache_dir() / "inflated" / f"{inner.stem}-{digest}{inner.suffix}"


def _too_big(path: Path, limit: int) -> InputError:
    return InputError(
        f"{path}: inflates to more than {limit} bytes, the limit for compressed inputs; "
        f"decompress it yourself (`gunzip -k`) and pass the result, or raise "
        f"{MAX_INFLATED_ENV}")


def inflate(path: Path) -> Path:
    """The inflated copy of gzip file ``path`` in the cache (made on first use).
    ``InputError`` (exit 3) for corrupt gzip or content over the limit."""
    limit = max_inflated_bytes()
    target = _cache_path(path)
    if target.is_file() and target.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        if target.stat().st_size > limit:
            raise _too_big(path, limit)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=".inflate-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, gzip.open(path, "rb") as src:
            _copy_bounded(src, out, path, limit)
        os.replace(tmp, target)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc}); compress it again "
                         "or pass the uncompressed file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot be inflated into {target.parent} ({exc.strerror}); "
                         "free disk space or set INFRAPROF_CACHE_DIR") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return target


def _copy_bounded(src: gzip.GzipFile, out: BinaryIO, path: Path, limit: int) -> None:
    """Stream ``src`` into ``out`` in 1 MiB chunks; ``InputError`` past ``limit`` bytes."""
    written = 0
    while True:
        chunk = src.read(min(_CHUNK_BYTES, limit - written + 1))
        if not chunk:
            return
        written += len(chunk)
        if written > limit:
            raise _too_big(path, limit)
        out.write(chunk)
