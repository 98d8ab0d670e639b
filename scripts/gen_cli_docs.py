"""Generate ``docs/cli-reference.md`` from every command's ``--help``.

The help is rendered in click's plain layout (the text of ``--help`` without Typer's rich
panels) at a fixed width of 100 columns and without colour, so the file does not depend on the
terminal. ``tests/test_docs.py`` regenerates it and fails when the committed file differs.

    python scripts/gen_cli_docs.py          # rewrite docs/cli-reference.md
    python scripts/gen_cli_docs.py --check  # exit 1 when docs/cli-reference.md is stale
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli-reference.md"
WIDTH = 100
HEADER = """# CLI reference

Generated from each command's `--help` by `scripts/gen_cli_docs.py`; do not edit by hand
(`python scripts/gen_cli_docs.py` rewrites it, and `tests/test_docs.py` fails when it is stale).
Exit codes are listed in [exit-codes.md](exit-codes.md).
"""


def _context(cmd: Any, name: str, parent: Any = None) -> Any:
    return cmd.context_class(cmd, info_name=name, parent=parent, terminal_width=WIDTH,
                             max_content_width=WIDTH, color=False)


def _commands(cmd: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    yield ctx, cmd
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, _context(sub, name, ctx))


def help_text(cmd: Any, ctx: Any) -> str:
    """``--help`` of ``cmd`` in click's plain layout (Typer without its rich panels)."""
    cmd.rich_markup_mode = None
    formatter = ctx.make_formatter()
    cmd.format_help(ctx, formatter)
    return "\n".join(line.rstrip() for line in formatter.getvalue().splitlines()) + "\n"


def _walk() -> list[tuple[Any, Any]]:
    """(context, command) of every command, depth first in registration order."""
    from infraprof.cli import app

    root = typer.main.get_command(app)
    return list(_commands(root, _context(root, "infraprof")))


def command_paths() -> list[str]:
    """Every command, as typed: ``infraprof``, ``infraprof analyze``, ..."""
    return [str(ctx.command_path) for ctx, _ in _walk()]


def render() -> str:
    """The whole reference page."""
    parts = [HEADER]
    for ctx, cmd in _walk():
        parts.append(f"\n## `{ctx.command_path}`\n\n```text\n{help_text(cmd, ctx)}```\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/gen_cli_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
