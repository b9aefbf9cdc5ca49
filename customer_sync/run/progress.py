"""The terminal progress display: customers and batches done, rate, time left.

Quiet when standard error is not a terminal (a scheduler's log stays clean). Drawn on the
run's one console (``customer_sync.run.console.terminal``), through which log records are
printed too: they appear above the bar, not glued onto it.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from customer_sync.run.console import terminal

REDRAW_SECONDS = 0.1
"""The display takes the counts at most this often: it is called once per batch (thousands
a second), rich redraws ten times a second anyway, and each update costs tens of µs."""


class DeliveryProgress:
    """Counts customers and batches as outcomes arrive."""

    def __init__(self, total_customers: int, *, enabled: bool | None = None) -> None:
        show = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.batches = 0
        self._pending = 0  # customers counted but not yet given to the display
        self._shown_at = 0.0
        if show and total_customers:
            self._progress = Progress(
                TextColumn("[bold]delivering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("customers · {task.fields[batches]:,} batches · {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=terminal(),
                transient=False,
            )
            self._task = self._progress.add_task(
                "deliver", total=total_customers, batches=0, rate=""
            )

    def advance(self, customers: int) -> None:
        self.batches += 1
        self._pending += customers
        if self._progress is not None and time.monotonic() - self._shown_at >= REDRAW_SECONDS:
            self._show()

    def _show(self) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, advance=self._pending, batches=self.batches)
        self._pending = 0
        self._shown_at = time.monotonic()
        speed = self._progress.tasks[0].speed
        if speed:
            self._progress.update(self._task, rate=f"{speed:,.0f}/s")

    def __enter__(self) -> DeliveryProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._show()  # the last counts, whatever the time since the previous redraw
            self._progress.stop()
