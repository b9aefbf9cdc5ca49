"""The ledger in a file: ``SqliteLedger``, the embedded default.

It is the record of delivery (Prefect's own database is not: it drops events under load).
A rerun plans from it: customers whose acknowledged fingerprint matches are skipped, so a
crashed run resumed by running the same command again re-sends only what was never
acknowledged (at most the batches that were in flight). See ``docs/ledger.md``.

Every call is ``LedgerStore``'s (``ledger/store.py``, shared with PostgreSQL); this module
says how SQLite opens, migrates, locks (``flock`` under ``<state>/locks``) and commits. The
file holds card data (dead-lettered documents), so it is created readable by its owner only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import ClassVar, Final

import orjson

from customer_sync.ledger import _sqlite_sql as sql
from customer_sync.ledger._checkpointer import Checkpointer
from customer_sync.ledger.delivery_lock import DeliveryLock
from customer_sync.ledger.run_locks import RunLocks
from customer_sync.ledger.store import LedgerStore
from customer_sync.schemas.errors import ConfigError

LEDGER_FILE: Final = "ledger.sqlite3"
LOCK_FOLDER: Final = "locks"
BUSY_TIMEOUT_MS: Final = 10_000
CHECKPOINT_EVERY: Final = 200  # writes (a batch: 2) between background WAL checkpoints
CACHE_KIB: Final = 65_536  # page cache: the acknowledged index of millions stays warm


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only, or narrow an existing file to that."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class SqliteLedger(LedgerStore):
    """The ledger in ``<state_dir>/ledger.sqlite3``: WAL mode, one transaction per write.

    ``synchronous=NORMAL``: a commit survives the process being killed at any moment; a
    power loss may lose the last commits, which a rerun then simply sends again. Safe to
    share between threads (calls are serialised) and between processes (SQLite locking).
    """

    SQL: ClassVar[ModuleType] = sql

    def __init__(self, connection: sqlite3.Connection, state_dir: Path, read_only: bool) -> None:
        self._state_dir = state_dir
        self._run_locks = RunLocks(state_dir / LOCK_FOLDER, writable=not read_only)
        self._delivery_lock = DeliveryLock(state_dir / LOCK_FOLDER)
        self._checkpoints = Checkpointer(state_dir / LEDGER_FILE, CHECKPOINT_EVERY, BUSY_TIMEOUT_MS)
        super().__init__(
            connection,
            read_only=read_only,
            runs=self._run_locks,
            delivery=self._delivery_lock,
            writer_name=f"ledger-writer-{LEDGER_FILE}",
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

    def _close_connections(self) -> None:
        self._checkpoints.close()
        self._run_locks.release_all()
        self._delivery_lock.release()
        self._db.close()  # the last connection to close checkpoints what is left

    @property
    def path(self) -> Path:
        return self._state_dir / LEDGER_FILE

    # --- the hooks of LedgerStore --------------------------------------------------------
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

    def _read_only_error(self) -> Exception:
        return sqlite3.OperationalError("the ledger was opened read-only")

    def _limit(self, limit: int | None) -> object:
        return -1 if limit is None else limit

    def _customer_sends_params(self, customer_id: str) -> Sequence[object]:
        return (customer_id, orjson.dumps(customer_id).decode())

    def _settled(self, stopped_run: str) -> None:
        """Forget the stopped run's lock file; remove the spool files (card data) it left."""
        self._run_locks.forget(stopped_run)
        run_dir = self._state_dir / "runs" / stopped_run
        if not run_dir.is_dir():
            return
        for spool in run_dir.glob("spool*.arrow*"):
            with contextlib.suppress(FileNotFoundError):
                spool.unlink()


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
