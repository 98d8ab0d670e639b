"""What an analysis is: one :class:`Analysis` object per module, listed in the registry.

An analysis is a pure function ``run(ctx, params) -> Output``: it reads the trace and the shared
derived data cached on the :class:`~infraprof.analyses.context.AnalysisContext` (device
timelines, the kernel↔launch join, gap attributions, earlier analyses' outputs) and returns its
findings plus named tables for the report. It never modifies the context's data, and never
rewrites another analysis's findings.

``settings`` maps configuration keys (``[tool.infraprof]`` in ``pyproject.toml``,
``infraprof.toml``, command-line flags) onto fields of the analysis's params dataclass; see
:mod:`infraprof.config` for where values come from and ``docs/architecture.md`` for the
checklist when adding one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from infraprof.analyses.findings import Finding

if TYPE_CHECKING:
    from infraprof.analyses.context import AnalysisContext

SettingKind = Literal["duration", "share", "int", "bool"]


@dataclass(frozen=True)
class Output:
    """What one analysis produced: findings (unranked) and tables by name."""

    findings: list[Finding] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """A configuration key that sets ``field`` of the analysis's params.

    ``kind``: ``duration`` (``"1.2ms"``, ``"500us"`` or integer ns), ``share`` (a fraction in
    [0, 1] or ``"10%"``), ``int`` (≥ 0) or ``bool``."""

    key: str
    field: str
    kind: SettingKind
    help: str


@dataclass(frozen=True)
class Analysis:
    """One registered analysis.

    ``id``: stable name (``--disable ID``); ``finding_ids``: every finding id it can emit
    (each documented in ``docs/findings.md``; a trailing ``*`` is a family such as ``gap.*``);
    ``params_type``: a frozen dataclass whose defaults are the documented defaults;
    ``requires``: ids of analyses whose outputs it reads (when one is disabled, so is this);
    ``optional``: ``False`` for analyses the report cannot do without (cannot be disabled)."""

    id: str
    summary: str
    finding_ids: tuple[str, ...]
    params_type: type[Any]
    run: Callable[[AnalysisContext, Any], Output]
    requires: tuple[str, ...] = ()
    settings: tuple[Setting, ...] = ()
    optional: bool = True
