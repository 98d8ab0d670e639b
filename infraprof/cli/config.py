"""``infraprof config``: the effective settings, where each came from, and the ids to disable."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from enum import Enum
from pathlib import Path
from typing import Any

import typer


class ConfigFormat(str, Enum):
    table = "table"
    json = "json"


def _settings_rows(config_file: Path | None) -> tuple[list[dict[str, Any]], str]:
    from infraprof.analyses.registry import all_settings, build_config
    from infraprof.config import DEFAULT_SOURCE, load_config_file

    found = load_config_file(config_file)
    config = build_config(found.analysis, found.source)
    rows = []
    for owner, setting in all_settings():
        effective = config.values.get(setting.key)
        holder = config if owner == "report" else config.params[owner]
        rows.append({"key": setting.key, "value": getattr(holder, setting.field),
                     "kind": setting.kind,
                     "source": effective.source if effective else DEFAULT_SOURCE,
                     "applies_to": owner, "help": setting.help})
    disabled = config.values.get("disable")
    rows.append({"key": "disable", "value": disabled.value if disabled else [],
                 "kind": "ids", "source": disabled.source if disabled else DEFAULT_SOURCE,
                 "applies_to": "registry", "help": "analysis ids or finding-id patterns"})
    return rows, found.source


def _gate_rows(config_file: Path | None) -> list[dict[str, Any]]:
    from infraprof.config import DEFAULT_SOURCE, load_config_file
    from infraprof.gate.policy import load_policy

    found = load_config_file(config_file)
    policy = load_policy(config_file)
    given = {str(k).replace("-", "_") for k in (found.gate or {})}
    if "metrics" in given:
        given.add("include")
    values = {k: v for k, v in asdict(policy.defaults).items() if k != "report_only"}
    values.update({f.name: getattr(policy, f.name) for f in fields(policy)
                   if f.name not in ("source", "overrides", "defaults")})
    if policy.overrides:
        values["metric"] = {name: table for name, table in policy.overrides}
    return [{"key": f"gate.{name.replace('_', '-')}",
             "value": list(value) if isinstance(value, tuple) else value,
             "source": found.source if name in given else DEFAULT_SOURCE}
            for name, value in values.items()]


def _analyses() -> list[dict[str, Any]]:
    from infraprof.analyses.registry import ANALYSES

    return [{"id": a.id, "optional": a.optional, "requires": list(a.requires),
             "finding_ids": list(a.finding_ids), "summary": a.summary} for a in ANALYSES]


def _print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)
    console.print(Text(f"config file: {doc['config_file']}"))
    table = Table("setting", "value", "source", "applies to", title="Analysis settings",
                  title_justify="left")
    for row in doc["settings"]:
        table.add_row(Text(row["key"]), Text(json.dumps(row["value"])), Text(row["source"]),
                      Text(row["applies_to"]))
    console.print(table)
    gate = Table("setting", "value", "source", title="Gate policy", title_justify="left")
    for row in doc["gate"]:
        gate.add_row(Text(row["key"]), Text(json.dumps(row["value"])), Text(row["source"]))
    console.print(gate)
    analyses = Table("analysis id", "finding ids", "summary", title="Analyses (--disable ID)",
                     title_justify="left")
    for row in doc["analyses"]:
        analyses.add_row(Text(row["id"] + ("" if row["optional"] else " (always on)")),
                         Text(", ".join(row["finding_ids"]) or "-"), Text(row["summary"]))
    console.print(analyses)


def config(
    config_file: Path | None = typer.Option(
        None, "--config", help="TOML settings file (default: the nearest infraprof.toml, or "
        "pyproject.toml with [tool.infraprof])."),
    output_format: ConfigFormat = typer.Option(
        ConfigFormat.table, "--format", "-f", help="table or json."),
) -> None:
    """Print the effective settings of `analyze` and `gate`, where each value came from
    (default, the config file, or the command line), and the analysis and finding ids that
    `--disable` accepts."""
    settings, source = _settings_rows(config_file)
    doc = {"config_file": source, "settings": settings, "gate": _gate_rows(config_file),
           "analyses": _analyses()}
    if output_format is ConfigFormat.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        _print_table(doc)
