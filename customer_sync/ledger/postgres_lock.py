"""The delivery lock of a PostgreSQL ledger (``ledger/delivery_lock.py`` is the SQLite twin).

A holder holds a session-level advisory lock under a random 64-bit key on its ledger's
liveness connection, and has a row in ``delivery_holders`` saying who it is (run id once
known, host, pid, since when) and what it delivers. The server drops a session's advisory
locks when the session ends, so a holder killed by SIGKILL leaves a row whose key nobody
holds: stale, and removed by the next one who looks. Checking the holders and adding one's
own row happen in one transaction under a transaction-level advisory lock, so two runs
starting together cannot both see the other missing. Conflicts follow
``DeliveryScope.conflicts_with`` exactly as for SQLite.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from customer_sync.ledger import _postgres_sql as sql
from customer_sync.ledger.delivery_lock import DeliveryScope, Holder, wait_for_delivery_lock

log = logging.getLogger(__name__)


Connection = psycopg.Connection[tuple[Any, ...]]


class PgDeliveryLock:
    """The delivery lock of one ledger, held from ``acquire`` to ``release`` (or death)."""

    def __init__(
        self,
        session: Callable[[], contextlib.AbstractContextManager[Connection]],
        where: str,
    ) -> None:
        self._session = session  # the liveness connection, under its lock
        self._where = where
        self._key: int | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._key is not None

    def _live_holders(self, db: Connection) -> list[Holder]:
        """The holders whose session still holds its key; stale rows are removed."""
        live: list[Holder] = []
        for key, run_id, host, pid, since, owned, partitions in db.execute(
            sql.DELIVERY_HOLDERS
        ).fetchall():
            got = db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got and got[0]:  # nobody holds it: its session ended
                db.execute("SELECT pg_advisory_unlock(%s)", (key,))
                db.execute(sql.REMOVE_DELIVERY_HOLDER, (key,))
                continue
            scope = DeliveryScope.of(orjson.loads(owned) if owned else None, int(partitions))
            live.append(Holder(run_id, host, int(pid), since, scope))
        return live

    def _try(self, scope: DeliveryScope) -> list[Holder]:
        """Take the lock, or the holders in the way."""
        with self._session() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (sql.DELIVERY_REGISTRY_LOCK,))
            conflicts = [h for h in self._live_holders(db) if h.scope.conflicts_with(scope)]
            if conflicts:
                return conflicts
            key = secrets.randbits(64) - (1 << 63)
            # a session lock outlives the transaction (commit or rollback) until unlocked
            db.execute("SELECT pg_advisory_lock(%s)", (key,))
            owned = None if scope.owned is None else orjson.dumps(sorted(scope.owned)).decode()
            since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            db.execute(
                sql.ADD_DELIVERY_HOLDER,
                (key, socket.gethostname(), os.getpid(), since, owned, scope.partitions),
            )
            self._key = key
            return []

    def acquire(self, scope: DeliveryScope, wait: float | None = 0.0) -> None:
        """As ``DeliveryLock.acquire``: hold the lock for ``scope`` or raise ``RunLocked``
        naming the other run(s), at once, after ``wait`` seconds, or never (``None``)."""
        with self._lock:
            if self.held:
                return
            wait_for_delivery_lock(lambda: self._try(scope), self._where, wait)

    def name_run(self, run_id: str) -> None:
        """Write the run id into the holder's row (once ``start_run`` chose it)."""
        if self._key is None:
            return
        with self._session() as db:
            db.execute(sql.NAME_DELIVERY_HOLDER, (run_id, self._key))

    def release(self) -> None:
        """Remove the row and unlock; a connection already gone has dropped the lock."""
        key, self._key = self._key, None
        if key is None:
            return
        with contextlib.suppress(psycopg.Error), self._session() as db:
            db.execute(sql.REMOVE_DELIVERY_HOLDER, (key,))
            db.execute("SELECT pg_advisory_unlock(%s)", (key,))
