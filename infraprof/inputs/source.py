"""One opened input: what it is, where it came from and which file to read.

:func:`open_input` is the single entry point every loader goes through: it detects the kind by
content, refuses kinds the caller cannot use (one line naming the file, what it is and where
it belongs) and inflates gzip content into the cache.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from infraprof.errors import InputError
from infraprof.inputs.compressed import inflate
from infraprof.inputs.detect import InputKind, detect, is_gzip

_BELONGS: Final = {
    InputKind.NSYS_SQLITE: "pass it to `infraprof analyze`, `export` or `gate`",
    InputKind.NSYS_REPORT: "pass it to `infraprof analyze`, `export` or `gate`",
    InputKind.CAPTURE_FOLDER: "pass the file itself",
    InputKind.NCU_REPORT: "pass it to `infraprof analyze` or with `--ncu`",
    InputKind.NCU_CSV_RAW: "pass it to `infraprof analyze` or with `--ncu`",
    InputKind.NCU_CSV_DETAILS: "pass it to `infraprof analyze` or with `--ncu`",
    InputKind.KINETO: "pass it to `infraprof analyze`, `export` or `gate`",
    InputKind.PYSPY_CHROMETRACE: "pass it with `--pyspy` next to the nsys trace",
    InputKind.PYSPY_SPEEDSCOPE: "pass it with `--pyspy` next to the nsys trace",
    InputKind.PYSPY_RAW: "pass it with `--pyspy` next to the nsys trace",
    InputKind.PYSPY_SVG: "pass it with `--pyspy` next to the nsys trace",
    InputKind.ANALYZE_JSON: "compare runs with `infraprof gate --base A --cand B`",
    InputKind.GATE_METRICS_JSON: "compare runs with `infraprof gate --base A --cand B`",
}


@dataclass(frozen=True)
class Input:
    """``source`` as given, its ``kind``, and ``path``: what to read (the inflated copy in the
    cache for gzip content, else ``source`` itself; a capture folder is the folder)."""

    source: Path
    kind: InputKind
    path: Path

    @property
    def compressed(self) -> bool:
        """True when ``source`` was gzip and ``path`` is its inflated copy."""
        return self.path != self.source


def check_kind(path: Path, accept: Collection[InputKind] | None = None,
               wanted: str = "a supported input") -> InputKind:
    """The kind of ``path`` (nothing inflated or read beyond its head); with ``accept``, any
    other kind is an ``InputError`` (exit 3) that says the file is not ``wanted`` and where it
    belongs."""
    kind = detect(path)
    if accept is not None and kind not in accept:
        raise InputError(f"{path}: is {kind.description}, not {wanted}; {_BELONGS[kind]}")
    return kind


def open_input(path: Path, accept: Collection[InputKind] | None = None,
               wanted: str = "a supported input") -> Input:
    """:func:`check_kind`, then gzip content is inflated (bounded) for readers that need a
    plain file."""
    kind = check_kind(path, accept, wanted)
    if kind is InputKind.CAPTURE_FOLDER or not is_gzip(path):
        return Input(path, kind, path)
    return Input(path, kind, inflate(path))


@contextmanager
def naming_source(opened: Input) -> Iterator[None]:
    """Errors raised while reading an inflated copy also name the compressed input."""
    if not opened.compressed:
        yield
        return
    try:
        yield
    except InputError as exc:
        raise InputError(f"{opened.source}: {exc.message}") from exc
