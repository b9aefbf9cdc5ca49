"""Dated landing folders: ``source`` may name the night's folder by its date.

Banks land each night's extract in a folder of its own (``/landing/2026-11-25``). The
deployment's ``source`` can say so once, as a template: ``/landing/{date}`` (ISO date) or
``/landing/{date:%Y%m%d}`` (any ``strftime`` format). The date is the run's
``landing_date`` parameter when given, else the day the flow run was *scheduled* for (UTC),
so a run that starts late, or is retried the next morning, still reads its own night's
folder. Outside a flow run (a notebook) it is today (UTC).

A folder that is not there when the run starts is an ``InputError`` (one line, exit 2,
the run Failed and not retried); ``wait_for_files_seconds`` waits, polling, at most that
long for the three tables to appear before giving up with the same error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from pathlib import PurePosixPath
from typing import Final

from customer_sync.adapters.readers import locate_tables
from customer_sync.schemas.errors import ConfigError, InputError

log = logging.getLogger(__name__)

_DATE_FIELD: Final = re.compile(r"\{date(?::([^{}]*))?\}")
DEFAULT_POLL_SECONDS: Final = 5.0


def has_date_template(source: str | None) -> bool:
    return source is not None and _DATE_FIELD.search(source) is not None


def scheduled_day() -> dt.date:
    """The UTC day the current flow run was scheduled for (today outside a flow run)."""
    from prefect.runtime import flow_run

    start = flow_run.scheduled_start_time
    return start.astimezone(dt.UTC).date()


def landing_day(landing_date: dt.date | str | None) -> dt.date:
    """``landing_date`` when given (a date or ``YYYY-MM-DD``), else the scheduled day."""
    if landing_date is None:
        return scheduled_day()
    if isinstance(landing_date, dt.date):
        return landing_date
    try:
        return dt.date.fromisoformat(landing_date)
    except ValueError:
        raise ConfigError(
            f"landing_date must be a date as YYYY-MM-DD, not {landing_date!r}"
        ) from None


def dated_source(source: str | None, day: dt.date) -> str | None:
    """``source`` with every ``{date}`` / ``{date:FORMAT}`` replaced by ``day`` (pure)."""
    if source is None:
        return None

    def fill(match: re.Match[str]) -> str:
        fmt = match.group(1)
        return day.isoformat() if not fmt else day.strftime(fmt)

    return _DATE_FIELD.sub(fill, source)


def source_label(source: str | None) -> str:
    """A short name for where the extract comes from: the last part of the landing path
    that is not the date (``/srv/landing/{date}`` -> ``landing``); ``files`` for explicit
    paths."""
    if not source:
        return "files"
    parts = [
        part
        for part in PurePosixPath(source.split("://", 1)[-1]).parts
        if part not in ("/", "") and not _DATE_FIELD.search(part)
    ]
    label = parts[-1] if parts else "landing"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "landing"


async def wait_for_landing(
    source: str,
    *,
    wait_seconds: float,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    storage_options: dict[str, object] | None = None,
) -> None:
    """Return once ``source`` holds the three tables; after ``wait_seconds`` (0: look once)
    raise the reader's own ``InputError``, saying how long it waited."""
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    told = False
    while True:
        try:
            await asyncio.to_thread(locate_tables, source, storage_options=storage_options)
            return
        except InputError as missing:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait_seconds > 0:
                    raise InputError(
                        missing.file, f"{missing.problem} (waited {wait_seconds:g} s)"
                    ) from None
                raise
            if not told:
                log.info(
                    "Waiting up to %g s for the extract to land in %s (%s)",
                    wait_seconds,
                    source,
                    missing.problem,
                )
                told = True
            await asyncio.sleep(min(poll_seconds, left))


__all__ = [
    "dated_source",
    "has_date_template",
    "landing_day",
    "scheduled_day",
    "source_label",
    "wait_for_landing",
]
