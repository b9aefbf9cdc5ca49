"""The ledger in PostgreSQL: the same tables and semantics as ``SqliteLedger``, shared.

For workers on ephemeral infrastructure (a local SQLite file does not survive between
nightly runs) and for shards on several machines. What a write records comes from
``customer_sync/ledger/records.py``, exactly as for SQLite; the group commit is the same
``GroupWriter`` thread on this ledger's connection.

Run liveness: a run holds a session-level advisory lock (its key a 64-bit hash of its id)
on a connection of its own, from ``start_run`` to ``finish_run``. The server drops it when
that session ends, so when the process dies (even by SIGKILL) its runs read as stopped to
everyone else, with no heartbeat; ``pg_try_advisory_lock`` from another session tells a
stopped run from a live one.

Dead-letter documents are card data: the database's ``dead_letters`` table must be readable
by the service role only (see the README's "Ledger in PostgreSQL").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import psycopg

from customer_sync.ledger import _postgres_sql as sql
from customer_sync.ledger._writer import GroupWriter
from customer_sync.ledger.delivery_lock import DeliveryScope
from customer_sync.ledger.delivery_lock import RunLocked as RunLocked
from customer_sync.ledger.postgres_lock import PgDeliveryLock
from customer_sync.ledger.records import (
    BatchRecord,
    CustomerSend,
    DeadLetter,
    DeadLetterNote,
    Mark,
    Outcome,
    RunRecord,
    batch_record,
    customer_send,
    dead_letter,
    export_dead_letters,
    mark_row,
    new_run_id,
    now_text,
    outcome_rows,
    redacted,
    run_record,
    to_json,
)
from customer_sync.ledger.url import masked_url
from customer_sync.schemas.errors import ConfigError
from customer_sync.schemas.records import Batch, BatchOutcome

CONNECT_TIMEOUT_S: Final = 10
LOCK_TIMEOUT: Final = "10s"  # as SQLite's busy_timeout: a write waits this long for a lock
_ID_CHUNK: Final = 100_000
_PAGE: Final = 1_000


def run_lock_key(run_id: str) -> int:
    """The advisory lock key of a run: a signed 64-bit hash of its id (no collisions in
    practice, unlike the 32-bit ``hashtext``)."""
    digest = hashlib.blake2b(f"customer-sync run {run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _connect(url: str, *, read_only: bool) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        db = psycopg.connect(
            url,
            autocommit=True,  # transactions are explicit: conn.transaction()
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="customer-sync",
        )
    except psycopg.Error as error:
        # libpq's message names host, port and user, never the password
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = "; ".join(lines) or type(error).__name__  # one line: libpq's are several
        raise ConfigError(f"{masked_url(url)}: cannot connect to the ledger: {reason}") from None
    db.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    db.execute("SET TIME ZONE 'UTC'")
    if read_only:
        db.execute("SET default_transaction_read_only = on")
    return db


class AdvisoryRunLocks:
    """Which runs are alive: each live run of this process holds a session-level advisory
    lock on one dedicated connection (``RunLocks`` with ``flock`` is the SQLite twin)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._db: psycopg.Connection[tuple[Any, ...]] | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._db is None:
            self._db = _connect(self._url, read_only=False)
        return self._db

    def acquire(self, run_id: str) -> None:
        with self._lock:
            got = self._connection().execute(
                "SELECT pg_try_advisory_lock(%s)", (run_lock_key(run_id),)
            )
            if not got.fetchone()[0]:  # type: ignore[index]
                raise RuntimeError(f"run {run_id} is already held by another session")
            self._held.add(run_id)

    def release(self, run_id: str) -> None:
        with self._lock:
            if run_id not in self._held:
                return
            self._held.discard(run_id)
            if self._db is not None and not self._db.closed:
                self._db.execute("SELECT pg_advisory_unlock(%s)", (run_lock_key(run_id),))

    def release_all(self) -> None:
        with self._lock:
            self._held.clear()
            if self._db is not None:
                self._db.close()  # ends the session: the server drops every lock it held
                self._db = None

    @contextlib.contextmanager
    def session(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The liveness connection, for the delivery lock (its session holds the locks)."""
        with self._lock:
            yield self._connection()

    def is_alive(self, run_id: str) -> bool:
        """Whether some session (this process's or another's) holds the run's lock."""
        with self._lock:
            if run_id in self._held:
                return True
            key = run_lock_key(run_id)
            db = self._connection()
            got = db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got and got[0]:
                db.execute("SELECT pg_advisory_unlock(%s)", (key,))
                return False
            return True


class PostgresLedger:
    """The ledger in a PostgreSQL database (``postgresql://`` URL); same calls as SQLite's.

    One connection for reads and writes, serialised by a lock (as SQLite's), plus the run
    locks' connection. Safe to share between threads, and between processes and machines
    (row locks; each shard writes its own customers).
    """

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]], url: str, read_only: bool) -> None:
        self._db = db
        self._url = url
        self._read_only = read_only
        self._lock = threading.RLock()
        self._runs = AdvisoryRunLocks(url)
        self._delivery = PgDeliveryLock(self._runs.session, masked_url(url))
        self._writer: GroupWriter[Mark | Outcome] = GroupWriter(
            self._commit, name="ledger-writer-postgresql"
        )

    # --- opening and closing -------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, read_only: bool = False) -> PostgresLedger:
        """Open the ledger at ``url``, creating or migrating its tables unless ``read_only``."""
        db = _connect(url, read_only=read_only)
        try:
            if not read_only:
                _migrate(db)
            _check_version(db, url)
        except BaseException:
            db.close()
            raise
        return cls(db, url, read_only)

    def close(self) -> None:
        """Commit the queued writes and close; a run not finished by then counts as stopped."""
        self._writer.close()
        with self._lock:
            self._delivery.release()
            self._runs.release_all()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Where this ledger is, user-info masked (safe to show)."""
        return masked_url(self._url)

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._lock, self._db.transaction():
            yield self._db

    def _commit(self, writes: Sequence[Mark | Outcome]) -> None:
        """Apply ``writes`` in one transaction, stamped with one time (the commit's)."""
        with self._write() as db:
            transaction = _Transaction(db, now_text())
            for write in writes:
                write.apply(transaction)

    def _read(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(statement, params).fetchall()

    # --- runs ----------------------------------------------------------------------------
    def start_run(self, parameters: Mapping[str, object]) -> str:
        """Record a new run (parameters as JSON, secret-looking names redacted); its id."""
        if self._read_only:
            raise psycopg.errors.ReadOnlySqlTransaction("the ledger was opened read-only")
        run_id = new_run_id()
        self._writer.drain()
        with self._lock:
            self._runs.acquire(run_id)
            try:
                with self._write() as db:
                    db.execute(
                        sql.START_RUN,
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
        """See ``Ledger.lock_delivery``: a session-level advisory lock on the liveness
        connection and a ``delivery_holders`` row naming the holder (see
        ``customer_sync/ledger/postgres_lock.py``), dropped by the server when the session dies."""
        if self._read_only:
            raise psycopg.errors.ReadOnlySqlTransaction("the ledger was opened read-only")
        self._delivery.acquire(DeliveryScope.of(owned, partitions), wait)

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, int], reason: str | None = None
    ) -> None:
        """Close a run with its final status, the counts of its report and why it ended so
        (after the writes queued before it)."""
        self._writer.drain()
        with self._lock:
            with self._write() as db:
                updated = db.execute(
                    sql.FINISH_RUN, (now_text(), status, to_json(dict(counts)), reason, run_id)
                ).rowcount
                if updated != 1:
                    raise KeyError(f"no run {run_id!r} in the ledger")
            self._runs.release(run_id)

    def last_run(self) -> RunRecord | None:
        found = self.runs(limit=1)
        return found[0] if found else None

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first."""
        return [run_record(r) for r in self._read(sql.RUNS, (limit,))]

    # --- the morning after (customer_sync/ledger/queries.py) ----------------------------------
    def run(self, run_id: str) -> RunRecord | None:
        """One run by its id, if the ledger has it."""
        rows = self._read(sql.RUN_BY_ID, (run_id,))
        return run_record(rows[0]) if rows else None

    def batches_of_run(self, run_id: str) -> list[BatchRecord]:
        """Every batch of a run, in the order they were marked."""
        return [batch_record(r) for r in self._read(sql.BATCHES_OF_RUN, (run_id,))]

    def customer_sends(self, customer_id: str) -> list[CustomerSend]:
        """Every batch that carried ``customer_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(sql.CUSTOMER_SENDS, {"id": customer_id}).fetchall()
        return [customer_send(r) for r in rows]

    def dead_letter_note(self, customer_id: str) -> DeadLetterNote | None:
        """The customer's dead letter, its document left out, if it has one."""
        rows = self._read(sql.DEAD_LETTER_OF, (customer_id,))
        return DeadLetterNote(*rows[0]) if rows else None

    def acknowledged_ids(self) -> list[str]:
        """Every customer the partner has acknowledged at least once (the ones it holds)."""
        return [r[0] for r in self._read(sql.ACKNOWLEDGED_IDS)]

    def prune_acknowledgements(self, older_than: str) -> int:
        """Drop acknowledgements of batches finished before ``older_than`` (UTC text, as
        the ledger writes times), each customer's current one kept; how many went."""
        self._writer.drain()
        with self._write() as db:
            return int(db.execute(sql.PRUNE_ACKNOWLEDGEMENTS, (older_than,)).rowcount)

    # --- planning ------------------------------------------------------------------------
    def acknowledged_fingerprints(self, customer_ids: Sequence[str]) -> dict[str, str]:
        """sourceCustomerId -> fingerprint of its last acknowledged document, for known ids."""
        ids = list(customer_ids)
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                found.update(self._db.execute(sql.ACKNOWLEDGED_FINGERPRINTS, (chunk,)).fetchall())
        return found

    def known_customer_count(self) -> int:
        return int(self._read(sql.KNOWN_CUSTOMERS)[0][0])

    # --- document parts (customer_sync/transforms/changes.py) ---------------------------
    def document_parts(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]:
        """sourceCustomerId -> the stored parts of its document of that fingerprint."""
        items = list(fingerprints.items())
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(items), _ID_CHUNK):
                chunk = items[start : start + _ID_CHUNK]
                ids, fps = [c for c, _ in chunk], [f for _, f in chunk]
                rows = self._db.execute(sql.DOCUMENT_PARTS, (ids, fps)).fetchall()
                found.update((cid, bytes(parts)) for cid, parts in rows)
        return found

    def customers_with_parts(self, fingerprints: Mapping[str, str]) -> set[str]:
        """The customers whose document of that fingerprint has its parts kept."""
        items = list(fingerprints.items())
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(items), _ID_CHUNK):
                chunk = items[start : start + _ID_CHUNK]
                ids, fps = [c for c, _ in chunk], [f for _, f in chunk]
                rows = self._db.execute(sql.CUSTOMERS_WITH_PARTS, (ids, fps)).fetchall()
                found.update(r[0] for r in rows)
        return found

    def record_document_parts(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep (sourceCustomerId, fingerprint, parts); per customer only this fingerprint's
        and the acknowledged one's parts stay. One transaction."""
        if not rows:
            return
        latest = {cid: fp for cid, fp, _ in rows}
        self._writer.drain()
        with self._write() as db:
            db.execute(sql.PRUNE_PARTS, (list(latest), list(latest.values())))
            with db.cursor() as cursor:
                cursor.executemany(sql.RECORD_PARTS, rows)

    # --- delivery ------------------------------------------------------------------------
    def mark_sending(self, run_id: str, batch: Batch) -> None:
        """Record that ``batch`` is about to go out; committed when this returns."""
        self._writer.drain()
        self._commit([mark_row(run_id, batch)])

    def record_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None:
        """Record a batch's outcome in one transaction, committed when this returns."""
        write = outcome_rows(run_id, outcome, fingerprints, documents)
        self._writer.drain()
        self._commit([write])

    async def amark_sending(self, run_id: str, batch: Batch) -> None:
        """``mark_sending`` for the event loop: returns once the mark is committed."""
        await self._writer.commit_and_wait(mark_row(run_id, batch))

    def queue_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None:
        """``record_outcome`` for the event loop: queued, committed by the writer thread."""
        self._writer.submit(outcome_rows(run_id, outcome, fingerprints, documents))

    async def aflush(self) -> None:
        """Return once every write queued before this call is committed."""
        await self._writer.commit_and_wait(None)

    # --- crashed runs --------------------------------------------------------------------
    def _stopped_runs(self) -> list[str]:
        running = self._read(sql.RUNNING_RUNS)
        return [r[0] for r in running if not self._runs.is_alive(r[0])]

    def _sending_batches(self, run_ids: Sequence[str]) -> list[BatchRecord]:
        if not run_ids:
            return []
        return [batch_record(r) for r in self._read(sql.SENDING_BATCHES, (list(run_ids),))]

    def interrupted_batches(self) -> list[BatchRecord]:
        """Batches left in ``sending`` by runs that stopped without finishing (crashed)."""
        with self._lock:
            stopped = set(self._stopped_runs())
            finished = self._read(sql.SENDING_OF_FINISHED_RUNS)
            return self._sending_batches(sorted(stopped | {r[0] for r in finished}))

    def settle_interrupted(self, run_id: str) -> list[BatchRecord]:
        """Mark the interrupted batches ``interrupted`` and their runs ``crashed``."""
        self._writer.drain()
        with self._lock:
            stopped = self._stopped_runs()
            batches = self.interrupted_batches()
            note = f"in flight when its run stopped; re-planned by run {run_id}"
            with self._write() as db, db.cursor() as cursor:
                if batches:
                    cursor.executemany(
                        sql.SETTLE_BATCH,
                        [(note, now_text(), b.run_id, b.batch_id) for b in batches],
                    )
                if stopped:
                    cursor.executemany(sql.SETTLE_RUN, [(r,) for r in stopped])
            return batches

    # --- dead letters --------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetter]:
        return list(self.iter_dead_letters())

    def iter_dead_letters(self) -> Iterator[DeadLetter]:
        """The dead letters page by page, so a night of failures does not fill memory."""
        last = ""
        while True:
            page = self._read(sql.DEAD_LETTER_PAGE, (last, _PAGE))
            yield from (dead_letter(row) for row in page)
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def dead_letter_ids(self, customer_ids: Iterable[str] | None = None) -> set[str]:
        if customer_ids is None:
            return {row[0] for row in self._read(sql.DEAD_LETTER_IDS)}
        ids = list(customer_ids)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                found.update(r[0] for r in self._db.execute(sql.DEAD_LETTER_IDS_AMONG, (chunk,)))
        return found

    def export_dead_letters(self, path: Path, *, include_documents: bool = False) -> int:
        """Write the dead letters as JSONL (owner-only file); how many were written."""
        return export_dead_letters(
            self.iter_dead_letters(), path, include_documents=include_documents
        )


class _Transaction:
    """The group's transaction on PostgreSQL: the connection and one time."""

    __slots__ = ("_dead_letters", "db", "now")

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]], now: str) -> None:
        self.db = db
        self.now = now
        self._dead_letters: bool | None = None

    def _may_hold_dead_letters(self) -> bool:
        if self._dead_letters is None:
            row = self.db.execute(sql.ANY_DEAD_LETTER).fetchone()
            self._dead_letters = bool(row and row[0])
        return self._dead_letters

    def mark(self, write: Mark) -> None:
        self.db.execute(sql.MARK_SENDING, (*write.row, self.now))

    def outcome(self, write: Outcome) -> None:
        db, now = self.db, self.now
        if db.execute(sql.FINISH_BATCH, (*write.batch, now, *write.key)).rowcount == 0:
            # never marked (record_outcome alone): the whole row, its ids included
            ids = to_json(list(write.customer_ids))
            row = (*write.key, write.method, ids, len(write.customer_ids), *write.batch, now, now)
            db.execute(sql.RECORD_BATCH, row)
        if write.acknowledged is not None:
            db.execute(sql.ACKNOWLEDGE, (*write.key, write.acknowledged))
            db.execute(sql.RECORD_ACKNOWLEDGEMENTS, (*write.key, write.acknowledged))
            if self._may_hold_dead_letters():
                db.execute(sql.CLEAR_DEAD_LETTERS, (write.acknowledged,))
        if write.dead:
            with db.cursor() as cursor:
                cursor.executemany(sql.DEAD_LETTER, [(*row, now, now) for row in write.dead])
            self._dead_letters = True


def _migrate(db: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Bring the schema to ``SCHEMA_VERSION`` in one transaction; a newer one is left alone."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (sql.MIGRATION_LOCK,))
        db.execute(sql.CREATE_SCHEMA_TABLE)
        row = db.execute(sql.SCHEMA_VERSION_OF).fetchone()
        version = int(row[0]) if row else 0
        for step in range(version, sql.SCHEMA_VERSION):
            db.execute(sql.MIGRATIONS[step])
            db.execute(sql.SET_SCHEMA_VERSION, (step + 1,))


def _check_version(db: psycopg.Connection[tuple[Any, ...]], url: str) -> None:
    exists = db.execute(sql.SCHEMA_TABLE_EXISTS).fetchone()
    if not exists or not exists[0]:
        raise ConfigError(f"no ledger at {masked_url(url)}")
    row = db.execute(sql.SCHEMA_VERSION_OF).fetchone()
    version = int(row[0]) if row else 0
    if version != sql.SCHEMA_VERSION:
        raise ConfigError(
            f"{masked_url(url)}: ledger schema version {version}, this customer-sync reads "
            f"version {sql.SCHEMA_VERSION}; use the customer-sync release that wrote it"
        )
