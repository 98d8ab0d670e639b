"""Where settings come from: defaults, a config file, then command-line flags.

The config file is the nearest ``infraprof.toml``, or ``pyproject.toml`` with a
``[tool.infraprof]`` table, found by walking up from the working directory (``infraprof.toml``
wins in the same folder), or the file given with ``--config``. Analysis settings are the keys
of ``[tool.infraprof]`` (in ``infraprof.toml`` also the top-level keys); gate settings are
``[tool.infraprof.gate]`` (``[gate]`` in ``infraprof.toml``). Keys may use ``-`` or ``_``.

Every effective value remembers its source (``default``, the file's path, or
``command line``) so that ``infraprof config`` can say where each one came from.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infraprof.errors import UsageError
from infraprof.units import parse_duration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

CONFIG_FILE_NAME = "infraprof.toml"
DEFAULT_SOURCE = "default"
CLI_SOURCE = "command line"


@dataclass(frozen=True)
class ConfigValue:
    """One effective setting and where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class ConfigFile:
    """The settings tables of one config file (``path`` None: no file was found)."""

    path: Path | None = None
    analysis: Mapping[str, Any] = field(default_factory=dict)
    gate: Mapping[str, Any] | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path else DEFAULT_SOURCE


def normalize_key(key: str) -> str:
    """``launch_latency_threshold`` → ``launch-latency-threshold``."""
    return str(key).strip().replace("_", "-").lower()


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document; ``UsageError`` (exit 2) when unreadable or invalid."""
    try:
        with path.open("rb") as fh:
            doc: dict[str, Any] = tomllib.load(fh)
            return doc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc}); fix the file or pass --config") from exc


def _tool_table(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tool = doc.get("tool")
    table = tool.get("infraprof") if isinstance(tool, Mapping) else None
    return table if isinstance(table, Mapping) else None


def find_config(start: Path) -> Path | None:
    """The nearest ``infraprof.toml``, or ``pyproject.toml`` with ``[tool.infraprof]``."""
    for folder in (start.resolve(), *start.resolve().parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _tool_table(read_toml(candidate)) is not None:
            return candidate
    return None


def load_config_file(config: Path | None = None, start: Path | None = None) -> ConfigFile:
    """The file given (``config``) or the nearest one from ``start`` (default: cwd)."""
    if config is not None and not config.is_file():
        raise UsageError(f"{config}: config file not found; check --config")
    path = config if config is not None else find_config(start or Path.cwd())
    if path is None:
        return ConfigFile()
    doc = read_toml(path)
    table = _tool_table(doc)
    if table is None and path.name != "pyproject.toml":
        table = {k: v for k, v in doc.items() if k != "tool"}
    table = dict(table or {})
    gate = table.pop("gate", None)
    if gate is not None and not isinstance(gate, Mapping):
        raise UsageError(f"{path}: the gate settings must be a table")
    return ConfigFile(path, {normalize_key(k): v for k, v in table.items()}, gate)


def parse_setting(kind: str, value: Any, what: str) -> Any:
    """``value`` of a setting of ``kind`` (duration → int ns, share → float in [0, 1], int,
    bool). ``UsageError`` naming ``what`` (source and key) otherwise."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return text in ("true", "1", "yes", "on")
        raise UsageError(f"{what}: expected true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not str(value).strip().isdigit():
            raise UsageError(f"{what}: expected a whole number >= 0, got {value!r}")
        return int(str(value).strip())
    if kind == "duration":
        return _duration_ns(value, what)
    if kind == "share":
        return _share(value, what)
    raise ValueError(f"unknown setting kind {kind!r}")


def _duration_ns(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{what}: expected a duration such as 500us or 2ms, got {value!r}")
    number = parse_duration(str(value).strip().lower())
    if number is None:
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"{what}: expected a duration such as 500us or 2ms (plain numbers "
                         f"are ns), got {value!r}")
    return round(number)


def _share(value: Any, what: str) -> float:
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= 1:
        raise UsageError(f"{what}: expected a fraction in [0, 1] or a percentage such as "
                         f"\"10%\", got {value!r}")
    return number
