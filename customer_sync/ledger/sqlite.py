"""The ledger: what was sent, what the partner acknowledged, and what still failed.

It is the record of delivery (Prefect's own database is not: it drops events under load).
A rerun plans from it: customers whose acknowledged fingerprint matches are skipped, so a
crashed run resumed by running the same command again re-sends only what was never
acknowledged (at most the batches that were in flight). See ``docs/ledger.md``.

``Ledger`` is the small interface the pipeline uses; ``SqliteLedger`` implements it on a
file in the state folder. The file holds card data (dead-lettered documents), so it is
created readable by its owner only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import orjson

from customer_sync.ledger import _sqlite_sql as sql
from customer_sync.ledger._checkpointer import Checkpointer
from customer_sync.ledger._writer import GroupWriter
from customer_sync.ledger._writer import LedgerWriteError as LedgerWriteError
from customer_sync.ledger.delivery_lock import DeliveryLock, DeliveryScope
from customer_sync.ledger.delivery_lock import RunLocked as RunLocked
from customer_sync.ledger.records import BatchRecord as BatchRecord
from customer_sync.ledger.records import BatchState as BatchState
from customer_sync.ledger.records import CustomerResult as CustomerResult
from customer_sync.ledger.records import CustomerSend as CustomerSend
from customer_sync.ledger.records import DeadLetter as DeadLetter
from customer_sync.ledger.records import DeadLetterKind as DeadLetterKind
from customer_sync.ledger.records import DeadLetterNote as DeadLetterNote
from customer_sync.ledger.records import Mark as _Mark
from customer_sync.ledger.records import Outcome as _Outcome
from customer_sync.ledger.records import RunRecord as RunRecord
from customer_sync.ledger.records import batch_record as _batch_record
from customer_sync.ledger.records import customer_results as customer_results
from customer_sync.ledger.records import customer_send as _customer_send
from customer_sync.ledger.records import dead_letter as _dead_letter
from customer_sync.ledger.records import export_dead_letters as _export_dead_letters
from customer_sync.ledger.records import mark_row as _mark
from customer_sync.ledger.records import new_run_id as _new_run_id
from customer_sync.ledger.records import now_text as _now
from customer_sync.ledger.records import outcome_rows as _outcome
from customer_sync.ledger.records import redacted as _redacted
from customer_sync.ledger.records import run_record as _run_record
from customer_sync.ledger.records import to_json as _json
from customer_sync.ledger.run_locks import RunLocks
from customer_sync.schemas.errors import ConfigError
from customer_sync.schemas.records import Batch, BatchOutcome

LEDGER_FILE: Final = "ledger.sqlite3"
LOCK_FOLDER: Final = "locks"
BUSY_TIMEOUT_MS: Final = 10_000
CHECKPOINT_EVERY: Final = 200  # writes (a batch: 2) between background WAL checkpoints
CACHE_KIB: Final = 65_536  # page cache: the acknowledged index of millions stays warm

_ID_CHUNK: Final = 100_000
_PAGE: Final = 1_000


class Ledger(Protocol):
    """What the pipeline needs from a ledger; a shared database can implement it too.

    Every write is transactional. ``mark_sending`` is called before a request goes out
    and ``record_outcome`` after its retries, so a crash leaves at most the in-flight
    batches in ``sending``. The event loop uses their group-commit forms: ``await
    amark_sending`` (committed when it returns), ``queue_outcome`` (committed soon after,
    and before any later mark) and ``await aflush``.
    """

    def lock_delivery(
        self, owned: Sequence[int] | None = None, partitions: int = 1, wait: float | None = 0.0
    ) -> None:
        """Hold this ledger's delivery lock until ``close`` (or the process dies).

        One delivering run (or replay) per ledger; shards of one chunk layout (``owned``
        chunks of ``partitions``) may hold it together when their chunks are disjoint.
        Raises ``RunLocked`` naming the holder(s) at once (``wait`` 0), after ``wait``
        seconds, or only once they end (``wait`` None). Call it before ``start_run``.
        """
        ...

    def start_run(self, parameters: Mapping[str, object]) -> str: ...

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, int], reason: str | None = None
    ) -> None: ...

    def acknowledged_fingerprints(self, customer_ids: Sequence[str]) -> dict[str, str]: ...

    def known_customer_count(self) -> int: ...

    def mark_sending(self, run_id: str, batch: Batch) -> None: ...

    def record_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None: ...

    async def amark_sending(self, run_id: str, batch: Batch) -> None: ...

    def queue_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None: ...

    async def aflush(self) -> None: ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def iter_dead_letters(self) -> Iterator[DeadLetter]: ...

    def dead_letter_ids(self, customer_ids: Iterable[str] | None = None) -> set[str]: ...

    def export_dead_letters(self, path: Path, *, include_documents: bool = False) -> int: ...

    def interrupted_batches(self) -> list[BatchRecord]: ...

    def settle_interrupted(self, run_id: str) -> list[BatchRecord]: ...

    def last_run(self) -> RunRecord | None: ...

    def runs(self, limit: int | None = None) -> list[RunRecord]: ...

    def close(self) -> None: ...


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only, or narrow an existing file to that."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SqliteLedger:
    """The ledger in ``<state_dir>/ledger.sqlite3``: WAL mode, one transaction per write.

    ``synchronous=NORMAL``: a commit survives the process being killed at any moment; a
    power loss may lose the last commits, which a rerun then simply sends again. Safe to
    share between threads (calls are serialised) and between processes (SQLite locking).
    """

    def __init__(self, connection: sqlite3.Connection, state_dir: Path, read_only: bool) -> None:
        self._db = connection
        self._state_dir = state_dir
        self._read_only = read_only
        self._lock = threading.RLock()
        self._runs = RunLocks(state_dir / LOCK_FOLDER, writable=not read_only)
        self._delivery = DeliveryLock(state_dir / LOCK_FOLDER)
        self._checkpoints = Checkpointer(state_dir / LEDGER_FILE, CHECKPOINT_EVERY, BUSY_TIMEOUT_MS)
        self._writer: GroupWriter[_Mark | _Outcome] = GroupWriter(
            self._commit, name=f"ledger-writer-{LEDGER_FILE}"
        )

    # --- opening and closing -------------------------------------------------------------
    @classmethod
    def open(cls, state_dir: Path, *, read_only: bool = False) -> SqliteLedger:
        """Open (creating when missing, unless ``read_only``) the ledger in ``state_dir``.

        A ledger that cannot be used (not SQLite, truncated, newer than this code, in a
        folder that cannot be written) is a ``ConfigError`` naming the file: nothing was
        read or sent yet.
        """
        path = Path(state_dir) / LEDGER_FILE
        try:
            _check_ledger_file(path)
            return cls._open(Path(state_dir), read_only=read_only)
        except sqlite3.OperationalError as error:
            raise ConfigError(
                f"{path}: cannot open the ledger{'' if read_only else ' for writing'}: {error} "
                "(is the state folder writable, and a folder?)"
            ) from None
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{path}: {_CORRUPT} ({error})") from None
        except OSError as error:
            raise ConfigError(
                f"{error.filename or path}: cannot open the ledger: {error.strerror or error}"
            ) from None

    @classmethod
    def _open(cls, state_dir: Path, *, read_only: bool) -> SqliteLedger:
        path = state_dir / LEDGER_FILE
        if read_only:
            if not path.exists():
                raise ConfigError(f"no ledger at {path}")
            uri = f"{path.resolve().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            if not state_dir.exists():
                state_dir.mkdir(mode=0o700, parents=True)
                os.chmod(state_dir, 0o700)
            _private_file(path)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            if not read_only:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.execute(
                    "PRAGMA wal_autocheckpoint = 0"
                )  # see customer_sync/ledger/_checkpointer.py
                _migrate(db)
            _check_version(db, path)
        except BaseException:
            db.close()
            raise
        if not read_only:
            # the -wal and -shm files hold the same data; SQLite gives them the db's mode
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
        return cls(db, state_dir, read_only)

    def close(self) -> None:
        """Commit the queued writes and close; a run not finished by then counts as stopped."""
        self._writer.close()
        with self._lock:
            self._checkpoints.close()
            self._runs.release_all()
            self._delivery.release()
            self._db.close()  # the last connection to close checkpoints what is left

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
    def path(self) -> Path:
        return self._state_dir / LEDGER_FILE

    @contextlib.contextmanager
    def _write(self, writes: int = 1) -> Iterator[sqlite3.Connection]:
        """One write transaction (of ``writes`` writes, for the checkpoints); IMMEDIATE
        takes the write lock up front (no deadlock)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
                self._checkpoints.committed(writes)
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _commit(self, writes: Sequence[_Mark | _Outcome]) -> None:
        """Apply ``writes`` in one transaction, stamped with one time (the commit's)."""
        with self._write(len(writes)) as db:
            transaction = _Transaction(db, _now())
            for write in writes:
                write.apply(transaction)

    def _read(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(statement, params).fetchall()

    # --- runs ----------------------------------------------------------------------------
    def start_run(self, parameters: Mapping[str, object]) -> str:
        """Record a new run (parameters as JSON, secret-looking names redacted); its id."""
        if self._read_only:
            raise sqlite3.OperationalError("the ledger was opened read-only")
        run_id = _new_run_id()
        self._writer.drain()
        with self._lock:
            self._runs.acquire(run_id)
            try:
                with self._write() as db:
                    db.execute(
                        sql.START_RUN,
                        (
                            run_id,
                            _now(),
                            _json(_redacted(parameters)),
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
        """See ``Ledger.lock_delivery``: a ``flock`` under ``<state>/locks`` (see
        ``customer_sync/ledger/delivery_lock.py``), dropped by the kernel when the process dies."""
        if self._read_only:
            raise sqlite3.OperationalError("the ledger was opened read-only")
        self._delivery.acquire(DeliveryScope.of(owned, partitions), wait)

    def finish_run(
        self, run_id: str, status: str, counts: Mapping[str, int], reason: str | None = None
    ) -> None:
        """Close a run with its final status, the counts of its report and why it ended
        so (``customer_sync/run/outcome.py``: completed, incomplete, aborted, failed, interrupted).

        The writes queued before it (``queue_outcome``) are committed first.
        """
        self._writer.drain()
        with self._lock:
            with self._write() as db:
                updated = db.execute(
                    sql.FINISH_RUN,
                    (_now(), status, _json(dict(counts)), reason, run_id),
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
        rows = self._read(sql.RUNS, (-1 if limit is None else limit,))
        return [_run_record(r) for r in rows]

    # --- the morning after (customer_sync/ledger/queries.py) ----------------------------------
    def run(self, run_id: str) -> RunRecord | None:
        """One run by its id, if the ledger has it."""
        rows = self._read(sql.RUN_BY_ID, (run_id,))
        return _run_record(rows[0]) if rows else None

    def batches_of_run(self, run_id: str) -> list[BatchRecord]:
        """Every batch of a run, in the order they were marked."""
        return [_batch_record(r) for r in self._read(sql.BATCHES_OF_RUN, (run_id,))]

    def customer_sends(self, customer_id: str) -> list[CustomerSend]:
        """Every batch that carried ``customer_id``, oldest first."""
        quoted = orjson.dumps(customer_id).decode()
        rows = self._read(sql.CUSTOMER_SENDS, (customer_id, quoted))
        return [_customer_send(r) for r in rows]

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
                chunk = orjson.dumps(ids[start : start + _ID_CHUNK]).decode()
                found.update(self._db.execute(sql.ACKNOWLEDGED_FINGERPRINTS, (chunk,)).fetchall())
        return found

    def known_customer_count(self) -> int:
        """How many customers the partner has acknowledged at least once."""
        return int(self._read("SELECT count(*) FROM acknowledged")[0][0])

    # --- document parts (customer_sync/transforms/changes.py) ---------------------------
    def document_parts(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]:
        """sourceCustomerId -> the stored parts of its document of that fingerprint."""
        items = list(fingerprints.items())
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(items), _ID_CHUNK):
                chunk = orjson.dumps(dict(items[start : start + _ID_CHUNK])).decode()
                found.update(
                    (cid, bytes(parts))
                    for cid, parts in self._db.execute(sql.DOCUMENT_PARTS, (chunk,))
                )
        return found

    def customers_with_parts(self, fingerprints: Mapping[str, str]) -> set[str]:
        """The customers whose document of that fingerprint has its parts kept."""
        items = list(fingerprints.items())
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(items), _ID_CHUNK):
                chunk = orjson.dumps(dict(items[start : start + _ID_CHUNK])).decode()
                found.update(r[0] for r in self._db.execute(sql.CUSTOMERS_WITH_PARTS, (chunk,)))
        return found

    def record_document_parts(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep (sourceCustomerId, fingerprint, parts); per customer only this fingerprint's
        and the acknowledged one's parts stay. One transaction."""
        if not rows:
            return
        latest = orjson.dumps({cid: fp for cid, fp, _ in rows}).decode()
        self._writer.drain()
        with self._write() as db:
            db.execute(sql.PRUNE_PARTS, (latest,))
            db.executemany(sql.RECORD_PARTS, rows)

    # --- delivery ------------------------------------------------------------------------
    def mark_sending(self, run_id: str, batch: Batch) -> None:
        """Record that ``batch`` is about to go out (before the request, so a crash shows).

        Its own transaction, committed when this returns (after any queued writes).
        """
        self._writer.drain()
        self._commit([_mark(run_id, batch)])

    def record_outcome(
        self,
        run_id: str,
        outcome: BatchOutcome,
        fingerprints: Mapping[str, str],
        documents: Mapping[str, bytes],
    ) -> None:
        """Record a batch's outcome in one transaction, committed when this returns.

        What became of each customer is read by ``customer_results``. Acknowledged
        customers get their fingerprint and leave the dead letters; rejected and failed ones
        become (or refresh) dead letters carrying ``documents[id]`` and the partner's answer.
        """
        write = _outcome(run_id, outcome, fingerprints, documents)
        self._writer.drain()
        self._commit([write])

    async def amark_sending(self, run_id: str, batch: Batch) -> None:
        """``mark_sending`` for the event loop: returns once the mark is committed.

        The commit is the writer thread's (see ``customer_sync/ledger/_writer.py``): it shares a
        transaction with the other writes queued meanwhile, and it comes after every
        outcome queued before this call. Raises ``LedgerWriteError`` if an outcome queued
        earlier could not be recorded: then nothing more may be sent.
        """
        await self._writer.commit_and_wait(_mark(run_id, batch))

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
        self._writer.submit(_outcome(run_id, outcome, fingerprints, documents))

    async def aflush(self) -> None:
        """Return once every write queued before this call is committed.

        Raises ``LedgerWriteError`` if a queued outcome could not be recorded.
        """
        await self._writer.commit_and_wait(None)

    # --- crashed runs --------------------------------------------------------------------
    def _stopped_runs(self) -> list[str]:
        running = self._read(sql.RUNNING_RUNS)
        return [r[0] for r in running if not self._runs.is_alive(r[0])]

    def _sending_batches(self, run_ids: Sequence[str]) -> list[BatchRecord]:
        if not run_ids:
            return []
        rows = self._read(sql.SENDING_BATCHES, (orjson.dumps(list(run_ids)).decode(),))
        return [_batch_record(r) for r in rows]

    def interrupted_batches(self) -> list[BatchRecord]:
        """Batches left in ``sending`` by runs that stopped without finishing (crashed).

        Their outcome is unknown: the partner may or may not have applied them. Their
        customers were not acknowledged, so the next run plans them again.
        """
        with self._lock:
            stopped = set(self._stopped_runs())
            finished = self._read(sql.SENDING_OF_FINISHED_RUNS)
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
            with self._write() as db:
                db.executemany(
                    sql.SETTLE_BATCH,
                    [(note, _now(), b.run_id, b.batch_id) for b in batches],
                )
                db.executemany(
                    sql.SETTLE_RUN,
                    [(r,) for r in stopped],
                )
            for stopped_run in stopped:
                self._runs.forget(stopped_run)
                self._remove_spools(stopped_run)
            return batches

    def _remove_spools(self, stopped_run: str) -> None:
        """Remove the spool files (card data) a stopped run left in its folder."""
        run_dir = self._state_dir / "runs" / stopped_run
        if not run_dir.is_dir():
            return
        for spool in run_dir.glob("spool*.arrow*"):
            with contextlib.suppress(FileNotFoundError):
                spool.unlink()

    # --- dead letters --------------------------------------------------------------------
    def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered customer, by sourceCustomerId."""
        return list(self.iter_dead_letters())

    def iter_dead_letters(self) -> Iterator[DeadLetter]:
        """The dead letters page by page, so a night of failures does not fill memory."""
        last = ""
        while True:
            page = self._read(sql.DEAD_LETTER_PAGE, (last, _PAGE))
            yield from (_dead_letter(row) for row in page)
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def dead_letter_ids(self, customer_ids: Iterable[str] | None = None) -> set[str]:
        """The dead-lettered customers (the next run re-sends them), or those among ids."""
        if customer_ids is None:
            return {row[0] for row in self._read(sql.DEAD_LETTER_IDS)}
        ids = list(customer_ids)
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = orjson.dumps(ids[start : start + _ID_CHUNK]).decode()
                found.update(r[0] for r in self._db.execute(sql.DEAD_LETTER_IDS_AMONG, (chunk,)))
        return found

    def export_dead_letters(self, path: Path, *, include_documents: bool = False) -> int:
        """Write the dead letters as JSONL (owner-only file); how many were written.

        Without ``include_documents`` a line holds the id, method, failure details and the
        partner's answer. With it, also the document that was sent, which is card data.
        """
        return _export_dead_letters(
            self.iter_dead_letters(), path, include_documents=include_documents
        )


class _Transaction:
    """The group's transaction as its writes see it: the connection and one time."""

    __slots__ = ("_dead_letters", "db", "now")

    def __init__(self, db: sqlite3.Connection, now: str) -> None:
        self.db = db
        self.now = now
        self._dead_letters: bool | None = None

    def may_hold_dead_letters(self) -> bool:
        """Whether there are dead letters to clear (asked once per transaction, not per
        batch: a night without failures never runs the DELETE)."""
        if self._dead_letters is None:
            self._dead_letters = bool(self.db.execute(sql.ANY_DEAD_LETTER).fetchone()[0])
        return self._dead_letters

    def added_dead_letters(self) -> None:
        self._dead_letters = True

    # --- how a mark and an outcome (customer_sync/ledger/records.py) are written here --------
    def mark(self, write: _Mark) -> None:
        """MARK_SENDING: the mark's row, then the time."""
        self.db.execute(sql.MARK_SENDING, (*write.row, self.now))

    def outcome(self, write: _Outcome) -> None:
        db, now = self.db, self.now
        if db.execute(sql.FINISH_BATCH, (*write.batch, now, *write.key)).rowcount == 0:
            # never marked (record_outcome alone): the whole row, its ids included
            ids = orjson.dumps(write.customer_ids).decode()
            row = (*write.key, write.method, ids, len(write.customer_ids), *write.batch, now, now)
            db.execute(sql.RECORD_BATCH, row)
        if write.acknowledged is not None:
            db.execute(sql.ACKNOWLEDGE, (*write.key, write.acknowledged))
            db.execute(sql.RECORD_ACKNOWLEDGEMENTS, (*write.key, write.acknowledged))
            if self.may_hold_dead_letters():
                db.execute(sql.CLEAR_DEAD_LETTERS, (write.acknowledged,))
        if write.dead:
            db.executemany(sql.DEAD_LETTER, [(*row, now) for row in write.dead])
            self.added_dead_letters()


_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_CORRUPT: Final = (
    "not a usable customer-sync ledger: the file is damaged or is not a ledger; restore it "
    "from a backup, or move it aside to start a new ledger (every customer is then sent again)"
)


def _check_ledger_file(path: Path) -> None:
    """Refuse a ledger file that is not SQLite, or is shorter than its header says (cut
    off by a full disk or a partial copy). SQLite itself would only notice when a query
    reaches a missing page, in the middle of a run. An empty file is a new ledger."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0 or not path.is_file():
        return
    with path.open("rb") as ledger:
        header = ledger.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise ConfigError(f"{path}: {_CORRUPT} (no SQLite header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65_536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_size_valid = header[24:28] == header[92:96]  # SQLite's own validity rule
    wal = path.with_name(path.name + "-wal")
    wal_has_pages = wal.exists() and wal.stat().st_size > 0
    if header_size_valid and not wal_has_pages and size < pages * page_size:
        raise ConfigError(
            f"{path}: {_CORRUPT} (truncated: {size:,} bytes of {pages * page_size:,})"
        )


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")  # two processes opening a new ledger: one creates it
    try:
        sql.migrate(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version != sql.SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: ledger schema version {version}, this customer-sync reads version "
            f"{sql.SCHEMA_VERSION}; use the customer-sync release that wrote it"
        )
