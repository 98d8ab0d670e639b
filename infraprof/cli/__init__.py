"""Command-line interface (Typer): parse, call the library, pick a renderer, set the exit code.

Exit codes (also in ``docs/exit-codes.md``): 0 ok · 1 gate/threshold failure · 2 usage ·
3 bad or unsupported input · 4 external tool missing or failed · 70 internal error ·
141 stdout closed early.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from typing import NoReturn

import click
import typer
from rich.console import Console
from typer._click.exceptions import NoArgsIsHelpError

from infraprof._version import __version__
from infraprof.cli.analyze import analyze
from infraprof.cli.cache import cache_app
from infraprof.cli.capture import capture
from infraprof.cli.config import config
from infraprof.cli.export import export
from infraprof.errors import ExitCode, InfraprofError, OutputClosed
from infraprof.text_safety import printable

EPILOG = (
    "Exit codes: 0 ok, 1 gate/threshold failure, 2 usage error, 3 bad or unsupported input, "
    "4 external tool (nsys/ncu/py-spy) missing or failed, 70 internal error, 141 stdout "
    "closed early."
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
app.command("config", epilog=EPILOG)(config)
app.add_typer(cache_app, name="cache")


def _usage_message(exc: Exception) -> str:
    """One line for a click/typer usage error: the message and where to get help."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    return f"{message}{where}"


def _quiet_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _fail(err: Console, message: str, code: int) -> NoReturn:
    err.print(f"infraprof: error: {printable(message)}", markup=False)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and an exit code.

    Usage mistakes (click's and typer's own exception classes alike) exit 2, user errors
    their :class:`~infraprof.errors.ExitCode`, a closed stdout 141 without a message, and
    anything else 70 with a one-line "this is a bug" message.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # pandas/numpy chatter would break the one-line rule
                warnings.simplefilter("ignore")
            rc = app(standalone_mode=False)
            sys.stdout.flush()
    except InfraprofError as exc:
        _fail(err, exc.message, int(exc.exit_code))
    except (typer.Exit, click.exceptions.Exit) as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, click.Abort):
        err.print("infraprof: aborted", markup=False)
        sys.exit(130)
    except (OutputClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(int(ExitCode.PIPE_CLOSED))
    except NoArgsIsHelpError as exc:  # the help was printed already (rich help)
        if exc.format_message().strip():
            err.print(exc.format_message(), markup=False)
        sys.exit(int(ExitCode.USAGE))
    except (typer.TyperException, click.ClickException) as exc:
        code = int(getattr(exc, "exit_code", 2))
        _fail(err, _usage_message(exc), int(ExitCode.USAGE) if code in (1, 2) else code)
    except Exception as exc:  # a real bug
        err.print(
            f"infraprof: internal error: {type(exc).__name__}: {printable(exc)}. This is a bug "
            f"in infraprof {__version__}; please report it with the command you ran.",
            markup=False,
        )
        sys.exit(int(ExitCode.INTERNAL))
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
