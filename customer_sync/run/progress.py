"""The terminal progress display: customers prepared, then delivered, with rate and time left.

Quiet when standard error is not a terminal (a scheduler's log stays clean). Drawn on the
run's one console (``customer_sync.run.console.terminal``), through which log records are
printed too: they appear above the bars, not glued onto them.

Rich allows one live display per console, and a streamed run prepares while it delivers,
so both bars are tasks of one shared display: the first to start opens it, the last to
finish closes it (``_SharedDisplay``).
"""

from __future__ import annotations

import sys
import threading
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


class _SharedDisplay:
    """The process's one live progress display, opened by its first user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._users = 0

    def open(self) -> Progress:
        with self._lock:
            if self._progress is None:
                self._progress = Progress(
                    TextColumn("[bold]{task.description:<10}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("customers · {task.fields[detail]}"),
                    TimeRemainingColumn(),
                    console=terminal(),
                    transient=False,
                )
                self._progress.start()
            self._users += 1
            return self._progress

    def close(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._progress is not None:
                self._progress.stop()
                self._progress = None


_display = _SharedDisplay()


def _shown(enabled: bool | None) -> bool:
    return sys.stderr.isatty() if enabled is None else enabled


class DeliveryProgress:
    """Counts customers and batches as outcomes arrive."""

    def __init__(self, total_customers: int, *, enabled: bool | None = None) -> None:
        self._show = _shown(enabled) and total_customers > 0
        self._total = total_customers
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.batches = 0
        self._pending = 0  # customers counted but not yet given to the display
        self._shown_at = 0.0
        self._open = False

    def advance(self, customers: int) -> None:
        self.batches += 1
        self._pending += customers
        if self._open and time.monotonic() - self._shown_at >= REDRAW_SECONDS:
            self._show_counts()

    def _show_counts(self) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, advance=self._pending, batches=self.batches)
        self._pending = 0
        self._shown_at = time.monotonic()
        speed = next(t.speed for t in self._progress.tasks if t.id == self._task)
        rate = f" · {speed:,.0f}/s" if speed else ""
        self._progress.update(self._task, detail=f"{self.batches:,} batches{rate}")

    def __enter__(self) -> DeliveryProgress:
        if self._show:
            self._progress, self._open = _display.open(), True
            self._task = self._progress.add_task(
                "delivering", total=self._total, batches=0, detail="0 batches"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None and self._open:
            self._show_counts()  # the last counts, whatever the time since the previous redraw
            self._open = False
            _display.close()


class PreparationProgress:
    """Customers read, validated and nested, chunk by chunk (one chunk for a small
    extract, whose steps are named as they start), with the time left."""

    def __init__(
        self, expected_customers: int, chunks: int, *, enabled: bool | None = None
    ) -> None:
        self._show = _shown(enabled) and expected_customers > 0
        self._expected = expected_customers
        self.chunks = chunks
        self.chunks_done = 0
        self.customers = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def step(self, what: str) -> None:
        """The step that starts now (reading, validating, nesting)."""
        self._describe(what)

    def chunk_done(self, customers: int) -> None:
        """One more chunk prepared, of ``customers`` customers read."""
        self.chunks_done += 1
        self.customers += customers
        if self._progress is not None and self._task is not None:
            total = max(self._expected, self.customers)  # the expectation is an estimate
            self._progress.update(self._task, completed=self.customers, total=total)
        self._describe()

    def _describe(self, step: str | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        detail = f"chunk {min(self.chunks_done + 1, self.chunks)} of {self.chunks}"
        if self.chunks_done == self.chunks:
            detail = f"{self.chunks:,} chunk{'s' if self.chunks != 1 else ''} done"
        self._progress.update(self._task, detail=f"{detail}: {step}" if step else detail)

    def __enter__(self) -> PreparationProgress:
        if self._show:
            self._progress = _display.open()
            self._task = self._progress.add_task(
                "preparing", total=self._expected, detail=f"chunk 1 of {self.chunks}"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None and self._task is not None:
            if exc_type is None:  # every customer read: the bar ends full
                self._progress.update(self._task, total=self.customers, completed=self.customers)
            self._progress = None
            _display.close()
