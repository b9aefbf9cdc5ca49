"""The one loop of a run: prepared chunks handed over to delivery, gated by the guards.

Preparation (read, validate, nest, plan: ``flows/prepare.py``, the worker processes do the
heavy part) runs in a thread and hands planned spool files over to the event loop, which
delivers them in order. Before a hand-over is delivered, the guards gate it. *When* they
gate is the run's policy, the only difference between the two kinds of run:

* ``GuardsFirst`` (the default): every chunk is planned into one spool and handed over
  once, so the guards see the whole extract's totals before the first customer goes out.
  A broken export is stopped before a single customer is sent. A small extract is the same
  loop with one chunk.
* ``Streaming`` (``--stream``): each chunk is handed over as soon as it is planned, and
  the guards are checked on the running totals before each one; at most ``ahead``
  planned chunks wait (a bounded hand-over: memory and disk stay flat). A backfill of
  millions of customers to a partner with real latency spends most of its time waiting on
  the network with idle cores, and this overlaps the two. The trade: a trip stops the run
  with nothing more sent, but the chunks before it **were** sent; a broken export is
  caught after at most the share the guards allow. For backfills and trusted extracts;
  the nightly run keeps the guards-first default.

A shard is a filter on the chunks (``ChunkLayout.owned``). Each customer lives in exactly
one chunk, so planning a chunk (a read of the ledger) never races with recording the
delivery of another one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from customer_sync.adapters.rejects import RejectsWriter
from customer_sync.adapters.spool import SpoolWriter
from customer_sync.flows.prepare import (
    ChunkLayout,
    Preparation,
    SourceSpec,
    chunk_layout,
    plan_chunk,
    prepare,
    validated_chunks,
)
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.errors import GuardTripped
from customer_sync.schemas.records import BatchOutcome

log = logging.getLogger(__name__)

CHUNKS_AHEAD = 2
"""Planned chunks that may wait for delivery when streaming; preparation pauses beyond."""
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ChunkReady:
    """A planned spool file handed over to delivery, and the run's totals once it was
    planned. ``whole``: it holds every chunk of the run (guards first)."""

    number: int
    spool_path: Path
    totals: Preparation
    whole: bool = False


@dataclass(frozen=True)
class _Finished:
    error: BaseException | None = None


Deliver = Callable[[ChunkReady], Awaitable[Sequence[BatchOutcome]]]
"""Delivers one handed-over spool file; returns its batches' outcomes."""
CheckGuards = Callable[[Preparation], None]
"""Raises ``GuardTripped`` when the totals so far cross a guard's limit."""


class GatePolicy(Protocol):
    """When the guards gate delivery."""

    each_chunk: bool
    """Hand over each chunk as it is planned (True), or every chunk at once."""

    def gate(self, ready: ChunkReady, *, sent: int) -> None:
        """Raise (``GuardTripped``) to stop before ``ready`` is delivered."""


@dataclass(frozen=True)
class GuardsFirst:
    """Gate once, on the whole extract's totals, before anything is sent."""

    check: CheckGuards
    each_chunk: bool = False

    def gate(self, ready: ChunkReady, *, sent: int) -> None:
        self.check(ready.totals)


@dataclass(frozen=True)
class Streaming:
    """Gate before each chunk, on the running totals; a trip says what was already sent."""

    check: CheckGuards
    each_chunk: bool = True

    def gate(self, ready: ChunkReady, *, sent: int) -> None:
        try:
            self.check(ready.totals)
        except GuardTripped as tripped:
            reason = str(tripped).replace("nothing was sent", "nothing more was sent")
            raise GuardTripped(
                f"streaming stopped before chunk {ready.number}: {reason} The chunks before "
                f"it were already delivered ({sent:,} customers)."
            ) from None


async def prepare_and_deliver(
    spec: SourceSpec,
    ledger: SqliteLedger,
    run_dir: Path,
    rejects_path: Path,
    *,
    deliver: Deliver,
    policy: GatePolicy,
    full_refresh: bool,
    mode: str,
    layout: ChunkLayout | None = None,
    ahead: int = CHUNKS_AHEAD,
    preparation: Preparation | None = None,
    prepare_seconds: list[float] | None = None,
    record_parts: bool = True,
    keep_documents: bool = False,
    collect_plan: bool = False,
) -> tuple[Preparation, list[BatchOutcome]]:
    """Prepare the chunks in a thread; gate and deliver each hand-over as it comes.

    Returns the run's preparation totals and every batch outcome. A guard trip, an input
    error or a failed delivery stops the preparation too (its workers and spill files go)
    and is raised here; a ``preparation`` given by the caller is filled in as chunks are
    planned, so it holds the totals of what was prepared even then. The preparation's
    wall time is appended to ``prepare_seconds`` (when given) once it ends.
    ``record_parts``, ``keep_documents`` and ``collect_plan`` go to the planning
    (``flows.prepare.plan_chunk``); streaming keeps the parts only.
    """
    if policy.each_chunk and (keep_documents or collect_plan):
        raise ValueError("a stream neither keeps documents nor collects the plan")
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

    def each_chunk() -> None:
        chunks = validated_chunks(spec, run_dir / "chunks", layout=layout)
        with RejectsWriter(rejects_path) as rejects, closing(chunks):
            for number, chunk in enumerate(chunks, start=1):
                spool_path = run_dir / f"spool-{number:05d}.arrow"
                with SpoolWriter(spool_path) as spool:
                    plan_chunk(
                        number,
                        chunk,
                        ledger,
                        spool,
                        rejects,
                        preparation,
                        full_refresh=full_refresh,
                        mode=mode,
                        record_parts=record_parts,
                    )
                del chunk
                if not offer(ChunkReady(number, spool_path, snapshot(preparation))):
                    spool_path.unlink(missing_ok=True)
                    return

    def all_at_once() -> None:
        spool_path = run_dir / "spool.arrow"
        prepare(
            spec,
            ledger,
            spool_path,
            rejects_path,
            full_refresh=full_refresh,
            mode=mode,
            layout=layout,
            preparation=preparation,
            record_parts=record_parts,
            keep_documents=keep_documents,
            collect_plan=collect_plan,
        )
        if not offer(ChunkReady(1, spool_path, snapshot(preparation), whole=True)):
            spool_path.unlink(missing_ok=True)

    def produce() -> None:
        started = time.perf_counter()
        try:
            (each_chunk if policy.each_chunk else all_at_once)()
        except BaseException as error:  # handed to the event loop, which raises it
            offer(_Finished(error))
            return
        finally:
            if prepare_seconds is not None:
                prepare_seconds.append(time.perf_counter() - started)
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
                policy.gate(item, sent=_sent(outcomes))
                outcomes.extend(await deliver(item))
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


def snapshot(preparation: Preparation) -> Preparation:
    """The counts as they are now (the producer keeps adding to the live object)."""
    return Preparation(
        rows_read=dict(preparation.rows_read),
        customers_read=preparation.customers_read,
        customers_valid=preparation.customers_valid,
        customers_held_back=preparation.customers_held_back,
        extract_share=preparation.extract_share,
        held_back_by_reason=dict(preparation.held_back_by_reason),
        orphan_accounts=preparation.orphan_accounts,
        orphan_cards=preparation.orphan_cards,
        creates=preparation.creates,
        updates=preparation.updates,
        unchanged=preparation.unchanged,
        changed=preparation.changed,
        rejects_path=preparation.rejects_path,
    )


def _sent(outcomes: Sequence[BatchOutcome]) -> int:
    return sum(len(outcome.customer_ids) for outcome in outcomes)


__all__ = [
    "CHUNKS_AHEAD",
    "ChunkReady",
    "GatePolicy",
    "GuardsFirst",
    "Streaming",
    "prepare_and_deliver",
    "snapshot",
]
