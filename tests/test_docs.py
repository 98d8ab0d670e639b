"""Docs that cannot drift: the CLI reference is regenerated from ``--help`` and compared with
the committed file, every command is documented, and the JSON schema validates real reports and
is described field by field in ``docs/json-schema.md``."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from helpers_reports import DEMO, MINIWEATHER, ROOT, report_for
from helpers_traces import TraceFiles

from infraprof.render.json_report import render_json

DOCS = ROOT / "docs"
SCHEMA = json.loads((DOCS / "json-schema.json").read_text(encoding="utf-8"))
SAMPLES = [DEMO, ROOT / "sample_traces" / "demo_launch_bound.sqlite",
           ROOT / "sample_traces" / "demo_sync_heavy.sqlite",
           ROOT / "sample_traces" / "cpu_only_stall_app.sqlite"]


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs",
                                                  ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    committed = (DOCS / "cli-reference.md").read_text(encoding="utf-8")
    assert _gen().render() == committed, (
        "docs/cli-reference.md is stale: run `python scripts/gen_cli_docs.py`")


def test_every_command_is_documented() -> None:
    gen = _gen()
    text = (DOCS / "cli-reference.md").read_text(encoding="utf-8")
    paths = gen.command_paths()
    assert {"infraprof analyze", "infraprof export", "infraprof capture"} <= set(paths)
    for path in paths:
        assert f"## `{path}`" in text
    for ctx, cmd in gen._walk():
        assert (cmd.help or "").strip(), f"{ctx.command_path} has no help text"


def test_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def _validate(path: Path) -> dict[str, Any]:
    data = json.loads(render_json(report_for(path)))
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data),
                    key=lambda e: list(e.path))
    assert not errors, [f"{e.json_path}: {e.message[:200]}" for e in errors[:5]]
    return data


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_reports_match_the_schema(path: Path) -> None:
    _validate(path)


@pytest.mark.realtraces
def test_real_report_matches_the_schema(trace_files: TraceFiles) -> None:
    data = _validate(trace_files.path(MINIWEATHER))
    assert data["findings"] and data["timeline"]["devices"]


def _names(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            out.add(key)
            out |= _names(sub)
        for key in ("items", "oneOf", "anyOf"):
            sub = node.get(key)
            for item in sub if isinstance(sub, list) else [sub]:
                out |= _names(item)
    return out


def test_schema_fields_are_described() -> None:
    text = (DOCS / "json-schema.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z0-9_]+)`", text))
    assert sorted(_names(SCHEMA) - documented) == []


def test_faq_and_getting_started() -> None:
    faq = (DOCS / "faq.md").read_text(encoding="utf-8")
    for phrase in ("ERR_NVGPUCTRPERM", "NVreg_RestrictProfilingToAdminUsers=0",
                   "is newer than the installed nsys", "environment"):
        assert phrase in faq
    code = (ROOT / "infraprof" / "readers" / "nsys_report.py").read_text(encoding="utf-8")
    assert "is newer than the installed nsys" in code
    start = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    for step in ("## 1. Capture", "## 2. Analyze", "## 3. Fix", "## 4. Gate"):
        assert step in start
