"""What both ledger stores share: ``LedgerStore``, every call of ``Ledger`` written once.

``SqliteLedger`` (``ledger/sqlite.py``) and ``PostgresLedger`` (``ledger/postgres.py``) are
``LedgerStore``s: every call the pipeline makes is written once, here, in terms of named
statements (each backend's ``_sqlite_sql`` / ``_postgres_sql`` module has the same names)
and a few hooks. A backend says only how it connects, migrates and locks, how a write
transaction is opened (``_write``) and how an id list is passed to a statement. What a write
records is decided by the pure functions of ``ledger/outcomes.py``, applied by a
``StoreTransaction``; what a read returns, by ``ledger/records.py``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Self

from customer_sync.ledger._transaction import StoreTransaction
from customer_sync.ledger._writer import GroupWriter
from customer_sync.ledger.delivery_lock import DeliveryScope
from customer_sync.ledger.export import export_dead_letters
from customer_sync.ledger.interface import DeliveryGuard, RunLiveness
from customer_sync.ledger.outcomes import Mark, Outcome, mark_row, outcome_rows
from customer_sync.ledger.parts_store import DocumentPartsStore
from customer_sync.ledger.records import (
    BatchRecord,
    CustomerSend,
    DeadLetter,
    DeadLetterNote,
    RunRecord,
    batch_record,
    customer_send,
    dead_letter,
    new_run_id,
    now_text,
    redacted,
    run_record,
    to_json,
)
from customer_sync.schemas.records import Batch, BatchOutcome


class LedgerStore(DocumentPartsStore):
    """Every ``Ledger`` call, once, over a backend's statements (``SQL``) and hooks.

    One connection for reads and writes, serialised by ``self._lock``; the delivery's
    writes are group-committed by a ``GroupWriter`` thread on it (``ledger/_writer.py``).
    Safe to share between threads.
    """

    SQL: ClassVar[ModuleType]
    TRANSACTION: ClassVar[type[StoreTransaction]] = StoreTransaction
    ID_CHUNK: ClassVar[int] = 100_000  # ids per lookup statement
    PAGE: ClassVar[int] = 1_000  # dead letters read at a time

    def __init__(
        self,
        db: Any,
        *,
        read_only: bool,
        runs: RunLiveness,
        delivery: DeliveryGuard,
        writer_name: str,
    ) -> None:
        self._db = db
        self._read_only = read_only
        self._lock = threading.RLock()
        self._runs = runs
        self._delivery = delivery
        self._writer: GroupWriter[Mark | Outcome] = GroupWriter(self._commit, name=writer_name)

    # --- what a backend says -------------------------------------------------------------
    def _write(self, writes: int = 1) -> contextlib.AbstractContextManager[Any]:
        """One write transaction (under ``self._lock``) of ``writes`` writes, yielding the
        connection."""
        raise NotImplementedError

    def _close_connections(self) -> None:
        """Release the locks and close the connections (the writer is closed already)."""
        raise NotImplementedError

    def _read_only_error(self) -> Exception:
        raise NotImplementedError

    def _ids(self, ids: Sequence[str]) -> object:
        """A list of ids as one statement parameter (SQLite: JSON text)."""
        return to_json(list(ids))

    def _limit(self, limit: int | None) -> object:
        return limit

    def _customer_sends_params(self, customer_id: str) -> Sequence[object] | Mapping[str, str]:
        raise NotImplementedError

    def _executemany(self, db: Any, statement: str, rows: list[tuple[object, ...]]) -> None:
        db.executemany(statement, rows)

    def _settled(self, stopped_run: str) -> None:
        """After ``settle_interrupted`` found ``stopped_run`` stopped (tidy its leftovers)."""

    # --- opening and closing -------------------------------------------------------------
    def close(self) -> None:
        """Commit the queued writes and close; a run not finished by then counts as stopped."""
        self._writer.close()
        with self._lock:
            self._close_connections()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _commit(self, writes: Sequence[Mark | Outcome]) -> None:
        """Apply ``writes`` in one transaction, stamped with one time (the commit's)."""
        with self._write(len(writes)) as db:
            transaction = self.TRANSACTION(db, now_text(), self.SQL)
            for write in writes:
                write.apply(transaction)

    def _read(
        self, statement: str, params: Sequence[object] | Mapping[str, object] = ()
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._db.execute(statement, params).fetchall()
            return rows

    def _read_among(self, statement: str, ids: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """``statement`` over ``ids``, ``ID_CHUNK`` at a time (the caller holds the lock)."""
        for start in range(0, len(ids), self.ID_CHUNK):
            chunk = self._ids(ids[start : start + self.ID_CHUNK])
            yield from self._db.execute(statement, (chunk,)).fetchall()

    # --- runs ----------------------------------------------------------------------------
    def start_run(self, parameters: Mapping[str, object]) -> str:
        """Record a new run (parameters as JSON, secret-looking names redacted); its id."""
        if self._read_only:
            raise self._read_only_error()
        run_id = new_run_id()
        self._writer.drain()
        with self._lock:
            self._runs.acquire(run_id)
            try:
                with self._write() as db:
                    db.execute(
                        self.SQL.START_RUN,
                        (
                            run_id,
                            now_text(),
                            to_json(redacted(parameters)),
                            socket.gethostname(),
                            os.getpid(),
                        ),
                    )
            except BaseException:
                self._runs.release(run_id)
                raise
        self._delivery.name_run(run_id)
        return run_id

    def lock_delivery(
        self, owned: Sequence[int] | None = None, partitions: int = 1, wait: float | None = 0.0
    ) -> None:
        """See ``Ledger.lock_delivery``; dropped when the process (or its session) dies."""
        if self._read_only:
            raise self._read_only_error()
        self._delivery.acquire(DeliveryScope.of(owned, partitions), wait)

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, int], reason: str | None = None
    ) -> None:
        """Close a run with its final status, the counts of its report and why it ended
        so (``customer_sync/run/outcome.py``: completed, incomplete, aborted, failed,
        interrupted). The writes queued before it (``queue_outcome``) are committed first.
        """
        self._writer.drain()
        with self._lock:
            with self._write() as db:
                updated = db.execute(
                    self.SQL.FINISH_RUN, (now_text(), status, to_json(dict(counts)), reason, run_id)
                ).rowcount
                if updated != 1:
                    raise KeyError(f"no run {run_id!r} in the ledger")
            self._runs.release(run_id)

    def last_run(self) -> RunRecord | None:
        """The most recently started run, if any."""
        found = self.runs(limit=1)
        return found[0] if found else None

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        return [run_record(r) for r in self._read(self.SQL.RUNS, (self._limit(limit),))]

    # --- the morning after (customer_sync/ledger/queries.py) -----------------------------
    def run(self, run_id: str) -> RunRecord | None:
        """One run by its id, if the ledger has it."""
        rows = self._read(self.SQL.RUN_BY_ID, (run_id,))
        return run_record(rows[0]) if rows else None

    def batches_of_run(self, run_id: str) -> list[BatchRecord]:
        """Every batch of a run, in the order they were marked."""
        return [batch_record(r) for r in self._read(self.SQL.BATCHES_OF_RUN, (run_id,))]

    def customer_sends(self, customer_id: str) -> list[CustomerSend]:
        """Every batch that carried ``customer_id``, oldest first."""
        rows = self._read(self.SQL.CUSTOMER_SENDS, self._customer_sends_params(customer_id))
        return [customer_send(r) for r in rows]

    def dead_letter_note(self, customer_id: str) -> DeadLetterNote | None:
        """The customer's dead letter, its document left out, if it has one."""
        rows = self._read(self.SQL.DEAD_LETTER_OF, (customer_id,))
        return DeadLetterNote(*rows[0]) if rows else None

    def acknowledged_ids(self) -> list[str]:
        """Every customer the partner has acknowledged at least once (the ones it holds)."""
        return [r[0] for r in self._read(self.SQL.ACKNOWLEDGED_IDS)]

    def prune_acknowledgements(self, older_than: str) -> int:
        """Drop acknowledgements of batches finished before ``older_than`` (UTC text, as
        the ledger writes times), each customer's current one kept; how many went."""
        self._writer.drain()
        with self._write() as db:
            return int(db.execute(self.SQL.PRUNE_ACKNOWLEDGEMENTS, (older_than,)).rowcount)

    # --- planning ------------------------------------------------------------------------
    def acknowledged_fingerprints(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """sourceCustomerId -> fingerprint of its last acknowledged document, for known ids."""
        ids = list(customer_ids)
        with self._lock:
            return dict(self._read_among(self.SQL.ACKNOWLEDGED_FINGERPRINTS, ids))

    def known_customer_count(self) -> int:
        """How many customers the partner has acknowledged at least once."""
        return int(self._read(self.SQL.KNOWN_CUSTOMERS)[0][0])

    # --- delivery ------------------------------------------------------------------------
    def mark_sending(self, run_id: str, batch: Batch) -> None:
        """Record that ``batch`` is about to go out (before the request, so a crash shows).

        Its own transaction, committed when this returns (after any queued writes).
        """
        self._writer.drain()
        self._commit([mark_row(run_id, batch)])

    def record_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None:
        """Record a batch's outcome in one transaction, committed when this returns.

        What became of each customer is read by ``outcomes.customer_results``. Acknowledged
        customers get their fingerprint and leave the dead letters; rejected and failed ones
        become (or refresh) dead letters carrying ``documents[id]`` and the partner's answer.
        """
        write = outcome_rows(run_id, outcome, fingerprints, documents)
        self._writer.drain()
        self._commit([write])

    async def amark_sending(self, run_id: str, batch: Batch) -> None:
        """``mark_sending`` for the event loop: returns once the mark is committed.

        The commit is the writer thread's (see ``customer_sync/ledger/_writer.py``): it
        shares a transaction with the other writes queued meanwhile, and it comes after
        every outcome queued before this call. Raises ``LedgerWriteError`` if an outcome
        queued earlier could not be recorded: then nothing more may be sent.
        """
        await self._writer.commit_and_wait(mark_row(run_id, batch))

    def queue_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None:
        """``record_outcome`` for the event loop: queued, committed by the writer thread.

        Returns at once. Until it is committed (with the next group: the writer starts on
        it at once, and every later ``amark_sending`` waits for it) the batch counts as in
        flight. A missing fingerprint or document raises here, with nothing queued.
        """
        self._writer.submit(outcome_rows(run_id, outcome, fingerprints, documents))

    async def aflush(self) -> None:
        """Return once every write queued before this call is committed.

        Raises ``LedgerWriteError`` if a queued outcome could not be recorded.
        """
        await self._writer.commit_and_wait(None)

    # --- crashed runs --------------------------------------------------------------------
    def _stopped_runs(self) -> list[str]:
        running = self._read(self.SQL.RUNNING_RUNS)
        return [r[0] for r in running if not self._runs.is_alive(r[0])]

    def _sending_batches(self, run_ids: Sequence[str]) -> list[BatchRecord]:
        if not run_ids:
            return []
        rows = self._read(self.SQL.SENDING_BATCHES, (self._ids(run_ids),))
        return [batch_record(r) for r in rows]

    def interrupted_batches(self) -> list[BatchRecord]:
        """Batches left in ``sending`` by runs that stopped without finishing (crashed).

        Their outcome is unknown: the partner may or may not have applied them. Their
        customers were not acknowledged, so the next run plans them again.
        """
        with self._lock:
            stopped = set(self._stopped_runs())
            finished = self._read(self.SQL.SENDING_OF_FINISHED_RUNS)
            return self._sending_batches(sorted(stopped | {r[0] for r in finished}))

    def settle_interrupted(self, run_id: str) -> list[BatchRecord]:
        """Mark the interrupted batches ``interrupted`` and their runs ``crashed``.

        Called by a new run (``run_id``) before planning, so each interruption is reported
        once; returns the batches it settled.
        """
        self._writer.drain()
        with self._lock:
            stopped = self._stopped_runs()
            batches = self.interrupted_batches()
            note = f"in flight when its run stopped; re-planned by run {run_id}"
            now = now_text()
            with self._write() as db:
                if batches:
                    self._executemany(
                        db,
                        self.SQL.SETTLE_BATCH,
                        [(note, now, b.run_id, b.batch_id) for b in batches],
                    )
                if stopped:
                    self._executemany(db, self.SQL.SETTLE_RUN, [(r,) for r in stopped])
            for stopped_run in stopped:
                self._settled(stopped_run)
            return batches

    # --- dead letters --------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered customer, by sourceCustomerId."""
        return list(self.iter_dead_letters())

    def iter_dead_letters(self) -> Iterator[DeadLetter]:
        """The dead letters page by page, so a night of failures does not fill memory."""
        last = ""
        while True:
            page = self._read(self.SQL.DEAD_LETTER_PAGE, (last, self.PAGE))
            yield from (dead_letter(row) for row in page)
            if len(page) < self.PAGE:
                return
            last = page[-1][0]

    def dead_letter_ids(self, customer_ids: Iterable[str] | None = None) -> set[str]:
        """The dead-lettered customers (the next run re-sends them), or those among ids."""
        if customer_ids is None:
            return {row[0] for row in self._read(self.SQL.DEAD_LETTER_IDS)}
        ids = list(customer_ids)
        with self._lock:
            return {r[0] for r in self._read_among(self.SQL.DEAD_LETTER_IDS_AMONG, ids)}

    def export_dead_letters(self, path: Path, *, include_documents: bool = False) -> int:
        """Write the dead letters as JSONL (owner-only file); how many were written.

        Without ``include_documents`` a line holds the id, method, failure details and the
        partner's answer. With it, also the document that was sent, which is card data.
        """
        return export_dead_letters(
            self.iter_dead_letters(), path, include_documents=include_documents
        )
