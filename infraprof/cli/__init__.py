"""Command-line interface (Typer): parse, call the library, pick a renderer, set the exit code.

Exit codes (also in ``docs/exit-codes.md``): 0 ok · 1 gate/threshold failure · 2 usage ·
3 bad or unsupported input · 4 external tool missing or failed · 70 internal error ·
141 stdout closed early.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from infraprof._version import __version__
from infraprof.errors import ExitCode, InfraprofError, OutputClosed
from infraprof.text_safety import printable

if TYPE_CHECKING:
    from rich.console import Console

EPILOG = (
    "Exit codes: 0 ok, 1 gate/threshold failure, 2 usage error, 3 bad or unsupported input, "
    "4 external tool (nsys/ncu/py-spy) missing or failed, 70 internal error, 141 stdout "
    "closed early."
)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True,
                 "allow_interspersed_args": False}
COMMANDS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "analyze": ("infraprof.cli.analyze", "analyze", {}),
    "capture": ("infraprof.cli.capture", "capture", {"context_settings": _PASS_THROUGH}),
    "compare": ("infraprof.cli.gate", "compare_command", {}),
    "gate": ("infraprof.cli.gate", "gate_command", {}),
    "baseline": ("infraprof.cli.gate", "baseline_app", None),
    "export": ("infraprof.cli.export", "export", {}),
    "config": ("infraprof.cli.config", "config", {}),
    "cache": ("infraprof.cli.cache", "cache_app", None),
}
"""Every sub-command, in ``--help`` order: its module, the attribute in it and the
``app.command`` settings (None: the attribute is a sub-app of its own). A run imports and
builds only the command it names (:func:`build_app`), so that a cached ``analyze`` does not
pay for ``capture``'s or ``gate``'s modules."""


def _version(value: bool) -> None:
    if value:
        print(f"infraprof {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """infraprof: GPU performance bottlenecks, ranked by recoverable time."""


def build_app(only: str | None = None) -> typer.Typer:
    """The Typer application with every sub-command of :data:`COMMANDS`, or with ``only``
    that one (same name, options and help: a run that names its command needs no other)."""
    application = typer.Typer(
        name="infraprof",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        help="Tells you why your GPU program is slow, with evidence, and fails CI when it "
        "gets slower.",
        epilog=EPILOG,
    )
    application.callback()(_root)
    for name, (module, attribute, settings) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if settings is None:
            application.add_typer(target, name=name)
        else:
            application.command(name, epilog=EPILOG, **settings)(target)
    return application


def __getattr__(name: str) -> Any:
    """``infraprof.cli.app``: the whole application, built on first use."""
    if name == "app":
        application = build_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _error_console() -> Console:
    """Rich console on stderr for the one-line messages (imported only when one is due)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _error_console().print(f"infraprof: error: {printable(message)}", markup=False)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and an exit code.

    Usage mistakes (click's and typer's own exception classes alike) exit 2, user errors
    their :class:`~infraprof.errors.ExitCode`, a closed stdout 141 without a message, and
    anything else 70 with a one-line "this is a bug" message.
    """
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # pandas/numpy chatter would break the one-line rule
                warnings.simplefilter("ignore")
            named = sys.argv[1] if len(sys.argv) > 1 else None
            application = build_app(named if named in COMMANDS else None)
            rc = application(standalone_mode=False)
            sys.stdout.flush()
    except InfraprofError as exc:
        _fail(exc.message, int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _error_console().print("infraprof: aborted", markup=False)
        sys.exit(130)
    except (OutputClosed, BrokenPipeError):
        _quiet_stdout()
        sys.exit(int(ExitCode.PIPE_CLOSED))
    except NoArgsIsHelpError as exc:  # the help was printed already (rich help)
        if exc.format_message().strip():
            _error_console().print(exc.format_message(), markup=False)
        sys.exit(int(ExitCode.USAGE))
    except ClickException as exc:
        code = int(getattr(exc, "exit_code", 2))
        _fail(_usage_message(exc), int(ExitCode.USAGE) if code in (1, 2) else code)
    except Exception as exc:  # a real bug
        _error_console().print(
            f"infraprof: internal error: {type(exc).__name__}: {printable(exc)}. This is a bug "
            f"in infraprof {__version__}; please report it with the command you ran.",
            markup=False,
        )
        sys.exit(int(ExitCode.INTERNAL))
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
