"""GitHub Actions: workflow-command annotations and the Markdown job summary.

* Annotations (``::error title=…::message``) go to stdout. GitHub shows at most 10 error and
  10 warning annotations per step, so at most :data:`MAX_PER_KIND` of each are printed (worst
  first) and the rest are left to the summary. Data is escaped as the Actions toolkit does:
  ``%``→``%25``, CR→``%0D``, LF→``%0A``; property values (``title=``) also ``:``→``%3A`` and
  ``,``→``%2C``.
* The job summary (Markdown) is appended to ``$GITHUB_STEP_SUMMARY``; GitHub rejects more than
  1 MiB per step, so the text is cut to fit (:data:`SUMMARY_LIMIT_BYTES`, counting what the
  file already holds) with a "…N more" line.
"""

from __future__ import annotations

import os
from pathlib import Path

from infraprof.gate.text import ordered, render_markdown
from infraprof.gate.verdict import GateResult, Verdict
from infraprof.outputs import append_output
from infraprof.text_safety import printable, safe_text

MAX_PER_KIND = 10
SUMMARY_LIMIT_BYTES = 1024 * 1024


def escape_data(text: str) -> str:
    """Escape a workflow-command message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (e.g. ``title``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation_lines(result: GateResult) -> list[str]:
    """``::error``/``::warning`` lines: failures are errors; other regressions, missing and
    inconclusive metrics are warnings; at most :data:`MAX_PER_KIND` per kind."""
    errors: list[str] = []
    warnings: list[str] = []
    for r in ordered(result):
        if r.failed:
            bucket, kind = errors, "error"
        elif r.warning and r.verdict is not Verdict.INCONCLUSIVE:
            bucket, kind = warnings, "warning"
        else:
            continue
        if len(bucket) < MAX_PER_KIND:
            title = f"infraprof gate: {printable(r.metric)} {r.verdict.value}"
            bucket.append(f"::{kind} title={escape_property(title)}::{escape_data(r.describe())}")
    return errors + warnings


def summary_markdown(result: GateResult, budget: int = SUMMARY_LIMIT_BYTES) -> str:
    """Markdown no larger than ``budget`` bytes (UTF-8), dropping table rows as needed."""
    text = render_markdown(result)
    rows = len(result.results)
    while len(text.encode("utf-8")) > budget and rows > 0:
        rows = max(0, rows // 2 if rows > 64 else rows - 1)
        text = render_markdown(result, limit=rows)
    if len(text.encode("utf-8")) > budget:
        text = result.headline()[: max(0, budget - 1)] + "\n"
    return text


def write_step_summary(result: GateResult, path: Path | None = None) -> Path | None:
    """Append the summary to ``path`` or ``$GITHUB_STEP_SUMMARY``; None when neither is set."""
    target = path or (Path(os.environ["GITHUB_STEP_SUMMARY"])
                      if os.environ.get("GITHUB_STEP_SUMMARY") else None)
    if target is None:
        return None
    try:
        used = target.stat().st_size if target.is_file() else 0
    except OSError:
        used = 0
    text = summary_markdown(result, max(0, SUMMARY_LIMIT_BYTES - used))
    append_output(target, safe_text(text), "the GitHub job summary ($GITHUB_STEP_SUMMARY)")
    return target


def render_github(result: GateResult) -> str:
    """What ``--format github`` prints: the annotations, then the headline."""
    return "\n".join([*annotation_lines(result), result.headline()]) + "\n"
