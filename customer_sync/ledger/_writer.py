"""Group commit: the delivery's ledger writes, committed on a thread of their own.

The event loop that delivers only queues its writes: ``SqliteLedger.amark_sending`` queues
a batch's ``sending`` mark and *awaits* its commit (the request goes out after it), and
``SqliteLedger.queue_outcome`` queues an outcome and returns at once. This thread commits
what is queued, in order, in one transaction: SQLite's work runs here with the GIL
released, not on the loop, and several batches share one ``BEGIN`` and ``COMMIT``.

When: at once when someone waits (a mark, ``aflush``, a ``drain`` before a synchronous
write, closing); an outcome alone waits at most ``LINGER`` (5 ms) for a mark to share its
transaction. A mark comes as soon as the outcome's batch gives up its concurrency slot, so
while the delivery is busy every transaction is "the outcomes so far and the next marks",
one commit per batch or fewer, and no batch waits on purpose.

Wake-ups cost the loop a futex call each, so they are few: a thread that is committing is
never woken (it looks at the queue before it waits again); after a commit it waits at most
``LINGER`` with no wake-up needed for an outcome (it finds it in time), and only after a
quiet ``LINGER`` does it sleep until woken. A mark (or flush) wakes a waiting thread once per
turn of its event loop (``call_soon``), so the marks queued in that turn share a transaction.

The crash window this leaves (see docs/ledger.md): an outcome that is queued but not yet
committed counts as in flight. A batch's mark is committed in the same transaction as, or
after, every outcome queued before it, and the delivery queues a batch's outcome before it
gives up its concurrency slot; so at every commit at most ``concurrency`` batches are
``sending``, as with one transaction per write. And an outcome is committed at most
``LINGER`` plus one transaction after it was queued.

Writes are applied in the order they were queued. A transaction that fails is rolled back
and its writes are tried again one transaction each, so one bad write fails alone: a mark's
error goes to its awaiting ``amark_sending``; an outcome's error is kept and raised by
every later ``amark_sending``, ``queue_outcome`` and ``aflush`` (no batch goes out after
an outcome could not be recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

MAX_WRITES: Final = 256  # writes per transaction at most (each is one batch)
LINGER: Final = 0.005  # seconds an outcome waits for a mark to share its transaction

W = TypeVar("W")


class LedgerWriteError(RuntimeError):
    """An outcome the ledger could not record; nothing is sent after it."""


@dataclass(slots=True)
class _Queued(Generic[W]):
    write: W | None  # None: a flush, resolved once everything before it is committed
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[None] | None  # someone waits for its commit: commit now
    at: float  # when it was queued (time.monotonic)


class GroupWriter(Generic[W]):
    """Commits queued writes in groups on a daemon thread (started on the first write).

    ``commit(writes)`` applies ``writes`` in one transaction, or raises with nothing written.
    """

    def __init__(self, commit: Callable[[Sequence[W]], None], name: str) -> None:
        self._commit = commit
        self._name = name
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # the thread waits for writes
        self._idle = threading.Condition(self._lock)  # drain() waits for the thread
        self._queue: list[_Queued[W]] = []
        self._waited_for = 0  # queued writes with a waiter, and threads in drain()
        self._busy = False
        self._polling = False  # the thread checks the queue every LINGER without wake-ups
        self._asleep = False  # the thread waits with no time limit: an outcome must wake it
        self._waiting = False  # the thread waits (with or without a limit)
        self._wake_loop: asyncio.AbstractEventLoop | None = None  # a wake-up due on its turn
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # --- called from the event loop (or any thread) ----------------------------------------
    def submit(
        self,
        write: W | None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        """Queue ``write``; ``future`` (on ``loop``) is resolved once it is committed."""
        with self._lock:
            self._raise_failure()
            if self._closed:
                raise RuntimeError("the ledger is closed")
            self._queue.append(_Queued(write, loop, future, time.monotonic()))
            if future is not None:
                self._waited_for += 1
                if self._thread is not None and loop is not None:
                    self._wake_for(loop)
                    return
            elif self._thread is not None and not self._asleep:
                # the thread is committing, or waiting at most LINGER: it finds this outcome
                # in time without a wake-up (one per outcome cost the loop ~9% of its time,
                # and the next batch's mark follows at once anyway)
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._work.notify()

    def _wake_for(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the thread (lock held) for a write that ``loop`` awaits: not at all when it is
        busy (it looks for waited-for writes before it waits again), else once per turn of
        the loop, at its end: the marks that turn queues share one transaction, instead of
        the first one alone and one wake-up (a futex call on the loop) per mark."""
        if not self._waiting or self._wake_loop is loop:
            return
        if self._wake_loop is not None:  # pending on another loop: do not depend on it
            self._work.notify()
            return
        self._wake_loop = loop
        loop.call_soon(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_loop = None
            self._work.notify()

    async def commit_and_wait(self, write: W | None) -> None:
        """Queue ``write`` (or a flush) and return once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.submit(write, loop, future)
        await future

    def drain(self) -> None:
        """Block until everything queued so far is committed (or has failed)."""
        with self._lock:
            self._waited_for += 1
            self._work.notify()
            try:
                while self._queue or self._busy:
                    self._idle.wait()
            finally:
                self._waited_for -= 1

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            self._work.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    # --- the thread ------------------------------------------------------------------------
    def _raise_failure(self) -> None:
        if self._error is not None:
            raise LedgerWriteError(
                f"the ledger could not record a batch's outcome: {self._error}"
            ) from self._error

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._due():
                    continue
                if not self._queue:  # closed
                    self._idle.notify_all()
                    return
                taken = self._queue[:MAX_WRITES]
                del self._queue[:MAX_WRITES]
                self._waited_for -= sum(1 for queued in taken if queued.future is not None)
                self._busy = True
            failures = self._write([q.write for q in taken if q.write is not None])
            with self._lock:
                for queued in taken:
                    if queued.future is None and queued.write is not None:
                        error = failures.get(id(queued.write))
                        if error is not None and self._error is None:
                            self._error = error
                outcome_error = self._error
                self._busy = False
                self._polling = True
                if not self._queue:
                    self._idle.notify_all()
            self._resolve(taken, failures, outcome_error)

    def _due(self) -> bool:
        """Wait (lock held) until the queue is due: someone waits for it, it is LINGER old,
        or the writer is closing. False when woken before that (ask again)."""
        if not self._queue:
            if self._closed:
                return True
            if self._polling:
                # right after a commit: wait at most LINGER, so that an outcome queued
                # meanwhile needs no wake-up; a quiet LINGER and the thread sleeps
                self._polling = self._wait(LINGER) or bool(self._queue)
            else:
                self._asleep = True
                try:
                    self._wait(None)
                finally:
                    self._asleep = False
            return self._closed and not self._queue
        if self._waited_for or self._closed:
            return True
        remaining = self._queue[0].at + LINGER - time.monotonic()
        if remaining <= 0:
            return True
        self._wait(remaining)
        return False

    def _wait(self, timeout: float | None) -> bool:
        self._waiting = True
        try:
            return self._work.wait(timeout)
        finally:
            self._waiting = False

    def _write(self, writes: list[W]) -> dict[int, BaseException]:
        """Commit ``writes`` in one transaction; on failure one by one. Failed writes."""
        if not writes:
            return {}
        try:
            self._commit(writes)
            return {}
        except Exception as error:  # handed to the waiters, never lost
            if len(writes) == 1 or isinstance(error, sqlite3.OperationalError):
                # alone, or the database itself is unavailable (locked, full, I/O): all fail
                return {id(write): error for write in writes}
        failures: dict[int, BaseException] = {}
        for write in writes:
            try:
                self._commit([write])
            except Exception as error:
                failures[id(write)] = error
        return failures

    @staticmethod
    def _resolve(
        taken: list[_Queued[W]],
        failures: dict[int, BaseException],
        outcome_error: BaseException | None,
    ) -> None:
        """Wake the waiters, with one call into each event loop."""
        settled: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for queued in taken:
            if queued.future is None or queued.loop is None:
                continue
            error: BaseException | None
            if queued.write is not None:  # a mark: its own error
                error = failures.get(id(queued.write))
            elif outcome_error is not None:  # a flush: fails if an outcome could not be recorded
                error = LedgerWriteError(
                    f"the ledger could not record a batch's outcome: {outcome_error}"
                )
                error.__cause__ = outcome_error
            else:
                error = None
            settled.setdefault(queued.loop, []).append((queued.future, error))
        for loop, results in settled.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, results)


_Result = tuple[asyncio.Future[None], BaseException | None]


def _settle(results: list[_Result]) -> None:
    for future, error in results:
        if future.done():  # its waiter was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
