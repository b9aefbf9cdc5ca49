"""WAL checkpoints on a thread of their own, so their fsync never stalls the writer.

With SQLite's automatic checkpoint, every thousandth page or so a commit also copies the
WAL into the database and fsyncs it: tens of milliseconds, on the event loop that delivers.
The ledger turns that off and asks this thread for a PASSIVE checkpoint (it never waits for
readers or writers) every ``every`` writes. Writes, not commits: a group commit holds many
batches' writes (and pages), so counting commits would let the WAL grow with the group size.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` in the background, when asked."""

    def __init__(self, path: Path, every: int, busy_timeout_ms: int) -> None:
        self._path = path
        self._every = every
        self._busy_timeout_ms = busy_timeout_ms
        self._writes = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def committed(self, writes: int = 1) -> None:
        """Count a commit of ``writes`` writes; every ``every`` writes, wake the thread."""
        self._writes += writes
        if self._writes < self._every:
            return
        self._writes = 0
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"ledger-checkpoint-{self._path.name}", daemon=True
            )
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:  # the next one catches up
                    log.debug("ledger checkpoint skipped: %s", error)
        finally:
            db.close()
