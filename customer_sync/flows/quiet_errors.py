"""Keep user-facing errors to one line: no tracebacks for problems the user can act on.

Prefect logs every exception that escapes a task or flow with its traceback. For our own
``CustomerSyncError`` (unusable input, a tripped guard, bad configuration), and for a full
disk or a file-size limit (ENOSPC, EFBIG, EDQUOT), the message is the whole story, so the
traceback is dropped from those records; anything else keeps it.
"""

from __future__ import annotations

import errno
import logging

from customer_sync.schemas.errors import CustomerSyncError

# a full disk or a file-size limit: the message (errno text) says what to fix
_FULL: frozenset[int] = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def _is_user_error(error: BaseException | None) -> bool:
    if isinstance(error, CustomerSyncError):
        return True
    return isinstance(error, OSError) and error.errno in _FULL


_PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")


class DropUserErrorTracebacks(logging.Filter):
    """Strips the traceback of records whose exception is a ``CustomerSyncError``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and _is_user_error(record.exc_info[1]):
            record.msg = f"{record.getMessage()} {record.exc_info[1]}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    """Attach the filter to Prefect's run loggers (idempotent)."""
    for name in _PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropUserErrorTracebacks) for f in logger.filters):
            logger.addFilter(DropUserErrorTracebacks())
