"""The ledger in PostgreSQL: the same tables and semantics as ``SqliteLedger``, shared.

Every call is ``LedgerStore``'s (``ledger/store.py``); this module says how PostgreSQL
connects, migrates, locks and passes ids (arrays, not JSON text).

For workers on ephemeral infrastructure (a local SQLite file does not survive between
nightly runs) and for shards on several machines. What a write records comes from
``customer_sync/ledger/outcomes.py``, exactly as for SQLite; the group commit is the same
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
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar, Final

import psycopg

from customer_sync.ledger import _postgres_sql as sql
from customer_sync.ledger._transaction import StoreTransaction
from customer_sync.ledger.postgres_lock import PgDeliveryLock
from customer_sync.ledger.store import LedgerStore
from customer_sync.ledger.url import masked_url
from customer_sync.schemas.errors import ConfigError

CONNECT_TIMEOUT_S: Final = 10
LOCK_TIMEOUT: Final = "10s"  # as SQLite's busy_timeout: a write waits this long for a lock


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


class _PgTransaction(StoreTransaction):
    """The group's transaction on PostgreSQL: executemany on a cursor, and DEAD_LETTER
    takes the time twice (first and last failure)."""

    __slots__ = ()

    def executemany(self, statement: str, rows: list[tuple[object, ...]]) -> None:
        with self.db.cursor() as cursor:
            cursor.executemany(statement, rows)

    def dead_letter_rows(self, dead: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return [(*row, self.now, self.now) for row in dead]


class PostgresLedger(LedgerStore):
    """The ledger in a PostgreSQL database (``postgresql://`` URL); same calls as SQLite's.

    One connection for reads and writes, serialised by a lock (as SQLite's), plus the run
    locks' connection. Safe to share between threads, and between processes and machines
    (row locks; each shard writes its own customers).
    """

    SQL: ClassVar[ModuleType] = sql
    TRANSACTION: ClassVar[type[StoreTransaction]] = _PgTransaction

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]], url: str, read_only: bool) -> None:
        self._url = url
        self._advisory = AdvisoryRunLocks(url)
        self._delivery_lock = PgDeliveryLock(self._advisory.session, masked_url(url))
        super().__init__(
            db,
            read_only=read_only,
            runs=self._advisory,
            delivery=self._delivery_lock,
            writer_name="ledger-writer-postgresql",
        )

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

    def _close_connections(self) -> None:
        self._delivery_lock.release()  # on the liveness session: before it closes
        self._advisory.release_all()
        self._db.close()

    @property
    def url(self) -> str:
        """Where this ledger is, user-info masked (safe to show)."""
        return masked_url(self._url)

    # --- the hooks of LedgerStore --------------------------------------------------------
    @contextlib.contextmanager
    def _write(self, writes: int = 1) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        with self._lock, self._db.transaction():
            yield self._db

    def _read_only_error(self) -> Exception:
        return psycopg.errors.ReadOnlySqlTransaction("the ledger was opened read-only")

    def _ids(self, ids: Sequence[str]) -> object:
        return list(ids)

    def _customer_sends_params(self, customer_id: str) -> Mapping[str, str]:
        return {"id": customer_id}

    def _executemany(
        self,
        db: psycopg.Connection[tuple[Any, ...]],
        statement: str,
        rows: list[tuple[object, ...]],
    ) -> None:
        with db.cursor() as cursor:
            cursor.executemany(statement, rows)


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
