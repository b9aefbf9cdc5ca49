"""Preparing and delivering at once (``--stream``): each chunk goes out while the next ones
are prepared.

By default a run prepares the whole extract before it sends anything, because both guards
(held-back share, mass update) are about the whole extract: a broken export is stopped
before a single customer goes out. That costs the preparation time on top of the delivery
time. A backfill of millions of customers to a partner with real latency spends most of its
time waiting on the network with idle cores, so ``stream`` overlaps the two:

* a thread prepares chunks (read, validate, nest, plan: the worker processes do the heavy
  part) and writes each one's planned documents to a spool file of its own;
* the event loop delivers the spooled chunks in order, while at most ``ahead`` prepared
  chunks wait (a bounded hand-over: preparation never runs further ahead, memory and disk
  stay flat);
* before a chunk is sent, the guards are checked on the totals of the chunks prepared so
  far. A trip stops the run: nothing more is sent, but the chunks before it **were** sent.
  That is the trade: a broken export is caught after at most the share the guards allow,
  not before the first customer. Use it for backfills and trusted extracts; the nightly run
  keeps the guards-first default.

Each customer lives in exactly one chunk, so planning a chunk (a read of the ledger) never
races with recording the delivery of another one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from customer_sync.adapters.rejects import RejectsWriter
from customer_sync.adapters.spool import SpoolWriter
from customer_sync.flows.prepare import (
    ChunkLayout,
    Preparation,
    SourceSpec,
    chunk_layout,
    plan_chunk,
    validated_chunks,
)
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.errors import GuardTripped
from customer_sync.schemas.records import BatchOutcome

log = logging.getLogger(__name__)

CHUNKS_AHEAD = 2
"""Prepared chunks that may wait for delivery; preparation pauses beyond that."""
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ChunkReady:
    """A prepared chunk's spool file and the run's totals once it was planned."""

    number: int
    spool_path: Path
    totals: Preparation


@dataclass(frozen=True)
class _Finished:
    error: BaseException | None = None


Deliver = Callable[[Path, int], Awaitable[Sequence[BatchOutcome]]]
"""Delivers one chunk's spool file (and its number); returns the batches' outcomes."""
CheckGuards = Callable[[Preparation], None]
"""Raises ``GuardTripped`` when the totals so far cross a guard's limit."""


async def prepare_while_delivering(
    spec: SourceSpec,
    ledger: SqliteLedger,
    run_dir: Path,
    rejects_path: Path,
    *,
    deliver: Deliver,
    check_guards: CheckGuards,
    full_refresh: bool,
    mode: str,
    layout: ChunkLayout | None = None,
    ahead: int = CHUNKS_AHEAD,
    preparation: Preparation | None = None,
) -> tuple[Preparation, list[BatchOutcome]]:
    """Prepare chunk after chunk in a thread and deliver each one as soon as it is ready.

    Returns the whole run's preparation totals and every batch outcome. A guard trip, an
    input error or a failed delivery stops the preparation too (its workers and spill files
    go) and is raised here; a ``preparation`` given by the caller is filled in as chunks
    are planned, so it holds the totals of what was prepared even then.
    """
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, not {ahead}")
    if layout is None:
        layout = chunk_layout(spec)
    if preparation is None:
        preparation = Preparation()
    preparation.extract_share = layout.share
    hand_over: queue.Queue[ChunkReady | _Finished] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(item: ChunkReady | _Finished) -> bool:
        """Wait for room in the hand-over; False when delivery has stopped meanwhile."""
        while not stop.is_set():
            with suppress(queue.Full):
                hand_over.put(item, timeout=_POLL_SECONDS)
                return True
        return False

    def produce() -> None:
        chunks = validated_chunks(spec, run_dir / "chunks", layout=layout)
        try:
            with RejectsWriter(rejects_path) as rejects, closing(chunks):
                for number, chunk in enumerate(chunks, start=1):
                    spool_path = run_dir / f"spool-{number:05d}.arrow"
                    with SpoolWriter(spool_path) as spool:
                        plan_chunk(
                            chunk,
                            ledger,
                            spool,
                            rejects,
                            preparation,
                            full_refresh=full_refresh,
                            mode=mode,
                        )
                    del chunk
                    totals = _snapshot(preparation)
                    if not offer(ChunkReady(number, spool_path, totals)):
                        spool_path.unlink(missing_ok=True)
                        return
            if rejects.rows:
                preparation.rejects_path = str(rejects.path)
        except BaseException as error:  # handed to the event loop, which raises it
            offer(_Finished(error))
            return
        offer(_Finished())

    # to_thread copies the context: Prefect's task runs in the thread join this flow run
    producer = asyncio.ensure_future(asyncio.to_thread(produce))
    outcomes: list[BatchOutcome] = []
    try:
        while True:
            item = await asyncio.to_thread(_next, hand_over)
            if item is None:
                continue
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                break
            try:
                _check(check_guards, item, sent=_sent(outcomes))
                outcomes.extend(await deliver(item.spool_path, item.number))
            finally:
                item.spool_path.unlink(missing_ok=True)
    finally:
        stop.set()
        while not producer.done():  # let a waiting producer see the stop
            _drain(hand_over)
            await asyncio.sleep(_POLL_SECONDS / 2)
        _drain(hand_over)
        await producer
    return preparation, outcomes


def _next(hand_over: queue.Queue[ChunkReady | _Finished]) -> ChunkReady | _Finished | None:
    """The next item, or None after a short wait (so a cancelled run frees its thread)."""
    try:
        return hand_over.get(timeout=_POLL_SECONDS)
    except queue.Empty:
        return None


def _drain(hand_over: queue.Queue[ChunkReady | _Finished]) -> None:
    """Take every waiting chunk out of the hand-over and remove its spool file."""
    while True:
        try:
            item = hand_over.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, ChunkReady):
            item.spool_path.unlink(missing_ok=True)


def _snapshot(preparation: Preparation) -> Preparation:
    """The counts as they are now (the producer keeps adding to the live object)."""
    return Preparation(
        rows_read=dict(preparation.rows_read),
        customers_read=preparation.customers_read,
        customers_valid=preparation.customers_valid,
        customers_held_back=preparation.customers_held_back,
        extract_share=preparation.extract_share,
        held_back_by_reason=dict(preparation.held_back_by_reason),
        creates=preparation.creates,
        updates=preparation.updates,
        unchanged=preparation.unchanged,
        changed=preparation.changed,
    )


def _sent(outcomes: Sequence[BatchOutcome]) -> int:
    return sum(len(outcome.customer_ids) for outcome in outcomes)


def _check(check_guards: CheckGuards, ready: ChunkReady, *, sent: int) -> None:
    """The guards on the totals so far; a trip says what was sent before it."""
    try:
        check_guards(ready.totals)
    except GuardTripped as tripped:
        reason = str(tripped).replace("nothing was sent", "nothing more was sent")
        raise GuardTripped(
            f"streaming stopped before chunk {ready.number}: {reason} The chunks before it "
            f"were already delivered ({sent:,} customers)."
        ) from None
