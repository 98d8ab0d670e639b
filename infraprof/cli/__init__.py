"""Command-line interface (Typer): parse, call the library, pick a renderer, set the exit code.

Exit codes (also in ``docs/exit-codes.md``): 0 ok · 1 gate/threshold failure · 2 usage ·
3 bad or unsupported input · 4 external tool missing or failed · 70 internal error.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from infraprof import __version__
from infraprof.cli.analyze import analyze
from infraprof.cli.capture import capture
from infraprof.cli.export import export
from infraprof.errors import ExitCode, InfraprofError

EPILOG = (
    "Exit codes: 0 ok, 1 gate/threshold failure, 2 usage error, 3 bad or unsupported input, "
    "4 external tool (nsys/ncu/py-spy) missing or failed, 70 internal error."
)

app = typer.Typer(
    name="infraprof",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    help="Tells you why your GPU program is slow, with evidence, and fails CI when it gets "
    "slower.",
    epilog=EPILOG,
)


def _version(value: bool) -> None:
    if value:
        print(f"infraprof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """infraprof: GPU performance bottlenecks, ranked by recoverable time."""


app.command(epilog=EPILOG)(analyze)
app.command(epilog=EPILOG, context_settings={
    "allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False,
})(capture)
from infraprof.cli.gate import baseline_app, compare_command, gate_command  # noqa: E402

app.command("compare", epilog=EPILOG)(compare_command)
app.command("gate", epilog=EPILOG)(gate_command)
app.add_typer(baseline_app, name="baseline")
app.command(epilog=EPILOG)(export)
app.add_typer(__import__("infraprof.cli.cache", fromlist=["cache_app"]).cache_app, name="cache")


def main() -> None:
    """Entry point: run the app, turning user errors into one line and an exit code."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        rc = app(standalone_mode=False)
    except InfraprofError as exc:
        err.print(f"infraprof: error: {exc.message}", markup=False)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("infraprof: aborted", markup=False)
        sys.exit(130)
    except Exception as exc:  # click usage errors and real bugs
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(int(ExitCode.USAGE) if exc.exit_code == 2 else exc.exit_code)
        err.print(
            f"infraprof: internal error: {type(exc).__name__}: {exc}. This is a bug in "
            f"infraprof {__version__}; please report it with the command you ran.",
            markup=False,
        )
        sys.exit(int(ExitCode.INTERNAL))
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
