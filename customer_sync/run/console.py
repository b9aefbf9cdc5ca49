"""The terminal of a run: one console that log lines and the progress display share.

Rich draws the progress bar on ``terminal()``; log records printed through the same console
land above the bar instead of being glued onto it. ``console_logging`` puts one handler on
the root logger for the length of a command: every logger that propagates (ours, Prefect's
flow and task run loggers) prints through it, as text on the terminal or, for log
shippers, as one JSON object per line. Installed before Prefect is imported, it is kept by
Prefect (which then leaves the root logger alone); Prefect's own console handler, found
there when Prefect was imported earlier (a test, a notebook), is set aside meanwhile and
put back after.

Every message goes through ``transforms.redaction.redacted`` first: a card-number-like
run, a JWT or a bearer credential never reaches the terminal or a log shipper, whatever
logged it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Iterator
from typing import Final, Literal

import orjson
from rich.console import Console
from rich.text import Text

from customer_sync.transforms.redaction import redacted

LogFormat = Literal["text", "json"]
Verbosity = Literal["quiet", "normal", "verbose"]

_HANDLER_LEVELS: Final = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": 0}
_OUR_LOGGER: Final = "customer_sync"
_LEVEL_STYLES: Final = {
    "DEBUG": "dim",
    "INFO": "cyan",
    "WARNING": "yellow3",
    "ERROR": "red3",
    "CRITICAL": "bright_red",
}
_PREFECT_CONSOLE_HANDLERS: Final = frozenset({"PrefectConsoleHandler"})

_terminal: Console | None = None
_active: list[tuple[Verbosity, LogFormat]] = []


def terminal() -> Console:
    """The process's console on standard error (the file is looked up at each write, so a
    test capturing stderr captures it too)."""
    global _terminal
    if _terminal is None:
        _terminal = Console(stderr=True, highlight=False, markup=False)
    return _terminal


def _who(record: logging.LogRecord) -> str:
    """Prefect's run loggers name the flow or task run; every other record its logger."""
    task_run = getattr(record, "task_run_name", None)
    if task_run:
        return f"Task run {task_run!r}"
    flow_run = getattr(record, "flow_run_name", None)
    if flow_run:
        return f"Flow run {flow_run!r}"
    return record.name


def message_of(record: logging.LogRecord) -> str:
    """The record's message (with its exception, if any), redacted."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text = f"{text}\n{logging.Formatter().formatException(record.exc_info)}"
    elif record.exc_text:
        text = f"{text}\n{record.exc_text}"
    # line by line: a traceback is kept whole (``redacted`` caps what it is given)
    return "\n".join(redacted(line) for line in text.splitlines())


def text_line(record: logging.LogRecord) -> Text:
    """``HH:MM:SS.mmm | LEVEL   | who - message``, the level coloured."""
    stamp = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
    return Text.assemble(
        f"{stamp} | ",
        (f"{record.levelname:<7}", _LEVEL_STYLES.get(record.levelname, "")),
        f" | {_who(record)} - {message_of(record)}",
    )


def json_line(record: logging.LogRecord) -> bytes:
    """One JSON object: time (UTC, ISO 8601), level, logger, message, and the Prefect run
    it belongs to when there is one."""
    entry: dict[str, object] = {
        "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": record.levelname,
        "logger": record.name,
        "message": message_of(record),
    }
    for field in ("flow_run_id", "flow_run_name", "task_run_id", "task_run_name"):
        value = getattr(record, field, None)
        if value:
            entry[field] = str(value)
    return orjson.dumps(entry)


class ConsoleLogHandler(logging.Handler):
    """Prints records through ``terminal()`` (text) or as JSON lines on standard error."""

    def __init__(self, log_format: LogFormat = "text", level: int = logging.INFO) -> None:
        super().__init__(level)
        self.log_format: LogFormat = log_format
        # a formatter marks this as the user's handler: Prefect then keeps the root logger
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.log_format == "json":
                line = json_line(record).decode() + "\n"
                with self.lock or contextlib.nullcontext():
                    sys.stderr.write(line)
                    sys.stderr.flush()
            else:
                terminal().print(text_line(record), soft_wrap=True)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console_logging(
    verbosity: Verbosity = "normal", log_format: LogFormat = "text"
) -> Iterator[ConsoleLogHandler]:
    """Log through the shared console (or JSON lines) while the block runs.

    ``quiet``: warnings and errors only; ``verbose``: our debug records too.
    """
    root = logging.getLogger()
    ours = logging.getLogger(_OUR_LOGGER)
    set_aside = [h for h in root.handlers if type(h).__name__ in _PREFECT_CONSOLE_HANDLERS]
    for handler in set_aside:
        root.removeHandler(handler)
    handler = ConsoleLogHandler(log_format, _HANDLER_LEVELS[verbosity])
    root.addHandler(handler)
    our_level = ours.level
    if verbosity == "verbose":
        ours.setLevel(logging.DEBUG)
    _active.append((verbosity, log_format))
    try:
        yield handler
    finally:
        _active.pop()
        root.removeHandler(handler)
        for kept in set_aside:
            root.addHandler(kept)
        ours.setLevel(our_level)


def progress_allowed(verbosity: Verbosity, log_format: LogFormat) -> bool:
    """The progress display is for people at a terminal: not with -q nor with JSON logs."""
    return verbosity != "quiet" and log_format == "text"


def progress_allowed_now() -> bool:
    """``progress_allowed`` for the ``console_logging`` in force (True when none is)."""
    if not _active:
        return True
    return progress_allowed(*_active[-1])
