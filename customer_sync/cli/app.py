"""The `customer-sync` command line (typer): the app, its common options, the commands.

Every command returns an exit status: 0 done, 1 a run (or validation) with failures, 2 an
unusable input, configuration or usage, 130 interrupted. Errors the user can act on are
one line on stderr (``customer-sync: <what>: <problem>``), never a traceback: typer's and
click's usage errors too.

Each command is a function in its own module (``cmd_<name>.py``), declared with the
options of ``cli.options`` and importing what it works with (pandas, Prefect) inside its
body, so that ``--help`` and ``--version`` import neither. To add one, write the module
and add one line to ``COMMANDS`` below.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

import typer

from customer_sync import __version__
from customer_sync.cli import (
    cmd_dead_letters,
    cmd_demo,
    cmd_generate,
    cmd_history,
    cmd_plan,
    cmd_replay,
    cmd_run,
    cmd_runs,
    cmd_stub,
    cmd_validate,
)
from customer_sync.cli.options import with_optional_values
from customer_sync.schemas.errors import CustomerSyncError

PROG = "customer-sync"

# name -> the function that is the command (its docstring's first line is its summary)
COMMANDS: tuple[tuple[str, Callable[..., int]], ...] = (
    ("validate", cmd_validate.validate),
    ("run", cmd_run.run),
    ("demo", cmd_demo.demo),
    ("replay", cmd_replay.replay),
    ("dead-letters", cmd_dead_letters.dead_letters),
    ("runs", cmd_runs.runs),
    ("history", cmd_history.history),
    ("plan", cmd_plan.plan),
    ("generate", cmd_generate.generate),
    ("stub-api", cmd_stub.stub_api),
)

app = typer.Typer(
    name=PROG,
    help="Validate customer/account/card extracts and deliver them to the partner API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
_console_choice: dict[str, str] = {"verbosity": "normal", "log_format": "text"}
"""The common options of this invocation (set by ``common_options``, read by the command)."""


def with_console(command: Callable[..., int]) -> Callable[..., int]:
    """``command`` run inside Prefect's settings and the shared console's logging.

    Set up here, once the command's own options are parsed, rather than in
    ``common_options``: ``customer-sync run --help`` then imports neither rich nor Prefect's
    start-up helpers."""

    @functools.wraps(command)
    def with_the_console(*args: Any, **kwargs: Any) -> int:
        # before anything imports Prefect (it reads its settings once, at import)
        from customer_sync.flows.prefect_setup import configure_prefect
        from customer_sync.run.console import console_logging

        configure_prefect()
        with console_logging(
            _console_choice["verbosity"],  # type: ignore[arg-type]
            _console_choice["log_format"],  # type: ignore[arg-type]
        ):
            return command(*args, **kwargs)

    return with_the_console


for _name, _command in COMMANDS:
    app.command(_name)(with_console(_command))


def _show_version(asked: bool) -> None:
    if asked:
        print(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def common_options(
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="only warnings, errors and the final summary")
    ] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="debug messages too")] = False,
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(
            "--log-format",
            help="text for people; json: one JSON object per line, for log shippers (no "
            "progress display then)",
        ),
    ] = "text",
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Validate customer/account/card extracts and deliver them to the partner API."""
    if quiet and verbose:
        raise typer.BadParameter("give -q or -v, not both", param_hint="-q/-v")
    verbosity = "quiet" if quiet else "verbose" if verbose else "normal"
    _console_choice.update(verbosity=verbosity, log_format=log_format)


def _usage_line(error: typer.TyperException) -> str:
    """A usage error as one line: the command, the problem, where the help is."""
    context = getattr(error, "ctx", None)
    path = context.command_path if context is not None else PROG
    command = path.removeprefix(PROG).strip()
    message = " ".join(error.format_message().split())
    line = f"{PROG}: {command}: {message}" if command else f"{PROG}: {message}"
    return f"{line} (see {path} --help)"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the command, return its exit status."""
    arguments = with_optional_values(sys.argv[1:] if argv is None else argv)
    _console_choice.update(verbosity="normal", log_format="text")
    command = typer.main.get_command(app)
    try:
        with command.make_context(PROG, arguments) as context:
            status: Any = command.invoke(context)
    except typer.Exit as end:  # --help, --version
        return end.exit_code
    except typer.TyperException as error:  # typer's (vendored click's) usage errors
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # type: ignore[attr-defined]
        else:
            print(_usage_line(error), file=sys.stderr)
        return 2
    except typer.Abort:
        print(f"{PROG}: aborted", file=sys.stderr)
        return 1
    except CustomerSyncError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
