"""The terminal progress display: customers and batches done, rate, time left.

Quiet when standard error is not a terminal (a scheduler's log stays clean).
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class DeliveryProgress:
    """Counts customers and batches as outcomes arrive."""

    def __init__(self, total_customers: int, *, enabled: bool | None = None) -> None:
        show = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.batches = 0
        if show and total_customers:
            self._progress = Progress(
                TextColumn("[bold]delivering"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("customers · {task.fields[batches]:,} batches · {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(
                "deliver", total=total_customers, batches=0, rate=""
            )

    def advance(self, customers: int) -> None:
        self.batches += 1
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=customers, batches=self.batches)
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
            self._progress.stop()
