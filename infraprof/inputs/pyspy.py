"""Find, read and align py-spy output for an nsys trace (the maths is in
:mod:`infraprof.model.clock`)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from infraprof.capture.layout import MANIFEST_NAME, CaptureFolder, Manifest, read_manifest
from infraprof.errors import InputError
from infraprof.inputs.detect import PYSPY_KINDS
from infraprof.inputs.source import naming_source, open_input
from infraprof.model.clock import AlignedPyspy, align_profile
from infraprof.readers.pyspy import PyspyProfile, read_pyspy
from infraprof.readers.validate import check_manifest

WANTED: Final = "py-spy output (chrometrace, speedscope, raw or flame-graph SVG)"


def load_pyspy(path: Path, manifest: Manifest | None = None) -> PyspyProfile:
    """Read py-spy output (any format, gzip too); the sampling rate comes from ``manifest``."""
    opened = open_input(path, PYSPY_KINDS, WANTED)
    with naming_source(opened):
        return read_pyspy(opened.path, manifest.pyspy_rate_hz if manifest else None)


def align_pyspy(nvtx: pd.DataFrame, pyspy_path: Path, manifest: Manifest | None = None,
                session_start_utc_ns: int | None = None) -> AlignedPyspy:
    """Read ``pyspy_path`` and put its samples on the nsys timeline when possible
    (see :func:`infraprof.model.clock.align_profile`)."""
    profile = load_pyspy(pyspy_path, manifest)
    return align_profile(nvtx, profile, manifest, session_start_utc_ns)


def checked_manifest(folder: Path) -> Manifest | None:
    """``folder``'s manifest with the fields the clock alignment reads type-checked
    (:func:`~infraprof.readers.validate.check_manifest`), or None when there is none."""
    manifest = read_manifest(folder)
    if manifest is not None:
        check_manifest(manifest.raw, folder / MANIFEST_NAME)
    return manifest


def load_capture_pyspy(folder: Path, nvtx: pd.DataFrame, session_start_utc_ns: int | None
                       ) -> AlignedPyspy | None:
    """The aligned py-spy profile of a capture folder, or ``None`` when it has none."""
    capture = CaptureFolder(folder)
    path = capture.pyspy_file()
    if path is None:
        return None
    return align_pyspy(nvtx, path, checked_manifest(folder), session_start_utc_ns)


def pyspy_for(input_path: Path, pyspy_file: Path | None, nvtx: pd.DataFrame,
              session_start_utc_ns: int | None) -> AlignedPyspy | None:
    """py-spy data for an ``analyze``/``export`` input: ``pyspy_file`` when given (its folder's
    manifest is used if present), else the py-spy file of a capture folder, else ``None``."""
    if pyspy_file is not None:
        if not pyspy_file.is_file():
            raise InputError(f"{pyspy_file}: no such py-spy file; check the --pyspy path")
        return align_pyspy(nvtx, pyspy_file, checked_manifest(pyspy_file.parent),
                           session_start_utc_ns)
    if input_path.is_dir():
        return load_capture_pyspy(input_path, nvtx, session_start_utc_ns)
    return None
