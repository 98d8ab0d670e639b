"""The input layer: every file or folder infraprof reads goes through here.

* :func:`detect` -> :class:`InputKind`: nsys SQLite export, ``.nsys-rep``/``.qdrep`` report,
  capture folder, ``.ncu-rep``, ncu CSV (raw/details page), py-spy output (chrometrace,
  speedscope, raw collapsed stacks, flame-graph SVG), ``analyze --format json`` output and gate
  metrics JSON, by content; gzip-compressed files are looked through and inflated (bounded) into
  the cache when read (:mod:`infraprof.inputs.compressed`).
* Loaders: :func:`load_trace` / :func:`load_input` (nsys or PyTorch profiler traces),
  :func:`load_ncu` (Nsight Compute), :func:`pyspy_for` /
  :func:`align_pyspy` (py-spy on the nsys timeline), :func:`read_json_document` (infraprof JSON).
* The capture folder layout and manifest are defined once, in :mod:`infraprof.capture.layout`.

Layering: ``capture -> readers -> model -> inputs -> analyses``; errors are ``InputError``
(exit 3, one line naming the file and the fix) or ``ToolError`` (exit 4).
"""

from infraprof.capture.layout import CaptureFolder, Manifest, read_manifest
from infraprof.inputs.detect import (
    JSON_DOCUMENT_KINDS,
    NCU_KINDS,
    NSYS_KINDS,
    PYSPY_KINDS,
    TRACE_KINDS,
    InputKind,
    detect,
)
from infraprof.inputs.documents import read_json_document
from infraprof.inputs.ncu import load_ncu
from infraprof.inputs.nsys import resolve_input, sqlite_for
from infraprof.inputs.pyspy import align_pyspy, load_capture_pyspy, load_pyspy, pyspy_for
from infraprof.inputs.source import Input, check_kind, open_input
from infraprof.inputs.traces import LoadedInput, load_input, load_trace

__all__ = [
    "JSON_DOCUMENT_KINDS",
    "NCU_KINDS",
    "NSYS_KINDS",
    "PYSPY_KINDS",
    "TRACE_KINDS",
    "CaptureFolder",
    "Input",
    "InputKind",
    "LoadedInput",
    "Manifest",
    "align_pyspy",
    "check_kind",
    "detect",
    "load_capture_pyspy",
    "load_input",
    "load_ncu",
    "load_pyspy",
    "load_trace",
    "open_input",
    "pyspy_for",
    "read_json_document",
    "read_manifest",
    "resolve_input",
    "sqlite_for",
]
