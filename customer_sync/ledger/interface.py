"""The ledger's one interface, ``Ledger``: what the pipeline needs from a ledger.

``LedgerStore`` (``ledger/store.py``) implements it once for both databases; a store is
given its run liveness (``RunLiveness``) and delivery lock (``DeliveryGuard``). The errors a
ledger raises to its callers: ``RunLocked`` (another run holds the delivery lock) and
``LedgerWriteError`` (a queued outcome could not be recorded; nothing more may be sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from customer_sync.ledger._writer import LedgerWriteError as LedgerWriteError
from customer_sync.ledger.delivery_lock import DeliveryScope
from customer_sync.ledger.delivery_lock import RunLocked as RunLocked
from customer_sync.ledger.records import BatchRecord, DeadLetter, RunRecord
from customer_sync.schemas.records import Batch, BatchOutcome


class Ledger(Protocol):
    """What the pipeline needs from a ledger (``SqliteLedger`` or ``PostgresLedger``).

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


class RunLiveness(Protocol):
    """Which runs are alive: ``RunLocks`` (flock) or ``AdvisoryRunLocks`` (PostgreSQL)."""

    def acquire(self, run_id: str) -> None: ...

    def release(self, run_id: str) -> None: ...

    def is_alive(self, run_id: str) -> bool: ...


class DeliveryGuard(Protocol):
    """The delivery lock: ``DeliveryLock`` (flock) or ``PgDeliveryLock`` (advisory)."""

    def acquire(self, scope: DeliveryScope, wait: float | None = 0.0) -> None: ...

    def name_run(self, run_id: str) -> None: ...
