"""Delivering the spool: batches of at most 50, grouped into Prefect task runs.

One task run per batch would cost about 4.7 ms each and drop Prefect events at tens of
thousands of batches (see DESIGN.md). So a task run delivers a *group* of batches; each
batch inside it is still retried on its own (adapters.delivery), every retry is logged to
the task run, and every outcome is committed to the ledger before any later batch is sent
and before the task run ends. Groups overlap so that concurrency never drains at a group's
end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from adapters.delivery import RetryEvent, RetryPolicy, deliver_batch
from adapters.ledger import SqliteLedger
from adapters.partner_client import PartnerClient
from adapters.spool import read_spool
from flows.report import BatchOutcomes
from schemas.records import Batch, BatchOutcome
from transforms.batching import make_batches

log = logging.getLogger(__name__)

BATCHES_PER_TASK_RUN = 100
TASK_RUNS_IN_FLIGHT = 2


@dataclass(frozen=True)
class PlannedBatch:
    """A batch and the fingerprints of its documents (recorded when acknowledged)."""

    batch: Batch
    fingerprints: dict[str, str]


def planned_batches(spool_path: Path, batch_size: int, run_id: str) -> Iterator[PlannedBatch]:
    """The spool cut into batches of one method each, in spool order."""
    for number, record_batch in enumerate(read_spool(spool_path)):
        columns = record_batch.to_pydict()
        ids: list[str] = columns["customer_id"]
        methods: list[str] = columns["method"]
        for method in ("POST", "PUT"):
            picked = [i for i, m in enumerate(methods) if m == method]
            if not picked:
                continue
            fingerprints = {ids[i]: columns["fingerprint"][i] for i in picked}
            for batch in make_batches(
                [ids[i] for i in picked],
                [columns["document"][i] for i in picked],
                method,  # type: ignore[arg-type]
                batch_size,
                id_prefix=f"{run_id}-{number:04d}-{method.lower()}",
            ):
                yield PlannedBatch(batch, {cid: fingerprints[cid] for cid in batch.customer_ids})


def _groups(batches: Iterator[PlannedBatch], size: int) -> Iterator[list[PlannedBatch]]:
    group: list[PlannedBatch] = []
    for planned in batches:
        group.append(planned)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


@task(name="deliver-batches", cache_policy=NONE)
async def deliver_group(
    group: list[PlannedBatch],
    client: PartnerClient,
    limiter: asyncio.Semaphore,
    ledger: SqliteLedger | None,
    run_id: str,
    policy: RetryPolicy,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
) -> BatchOutcomes:
    """Deliver a group of batches, each with its own retries; record each in the ledger."""
    run_log = get_run_logger()

    def _log_retry(event: RetryEvent) -> None:
        run_log.warning(
            "Batch %s attempt %d failed (%s); retrying in %.2fs",
            event.batch_id,
            event.attempt,
            event.reason,
            event.delay,
        )

    async def _one(planned: PlannedBatch) -> BatchOutcome:
        async with limiter:
            if ledger is not None:
                # committed before the request goes out, together with every outcome
                # queued before it (group commit on the ledger's writer thread)
                await ledger.amark_sending(run_id, planned.batch)
            outcome = await deliver_batch(client, planned.batch, policy, on_retry=_log_retry)
            if ledger is not None:
                documents = dict(
                    zip(planned.batch.customer_ids, planned.batch.documents, strict=True)
                )
                # queued while this batch still holds its slot: the next batch's mark waits
                # for it, so at most `concurrency` batches are ever in flight in the ledger
                ledger.queue_outcome(run_id, outcome, planned.fingerprints, documents)
        if outcome.status != "acknowledged":
            run_log.warning(
                "Batch %s %s after %d attempts (HTTP %s): %s",
                outcome.batch_id,
                outcome.status,
                outcome.attempts,
                outcome.http_status,
                outcome.error,
            )
        if on_outcome is not None:
            on_outcome(outcome)
        return outcome

    outcomes = await asyncio.gather(*(_one(planned) for planned in group))
    if ledger is not None:
        await ledger.aflush()  # a finished task run's outcomes are all committed
    run_log.info(
        "Delivered %d batches (%d customers): %d acknowledged",
        len(outcomes),
        sum(len(o.customer_ids) for o in outcomes),
        sum(1 for o in outcomes if o.status == "acknowledged"),
    )
    # not a list: Prefect links every item of a returned list to the task run (a leaf here)
    return BatchOutcomes(outcomes)


async def deliver_spool(
    spool_path: Path,
    client: PartnerClient,
    ledger: SqliteLedger | None,
    run_id: str,
    *,
    batch_size: int,
    concurrency: int,
    policy: RetryPolicy,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    batches_per_task_run: int = BATCHES_PER_TASK_RUN,
) -> BatchOutcomes:
    """Every spooled document delivered (or failed) once; outcomes in completion order."""
    limiter = asyncio.Semaphore(concurrency)
    outcomes = BatchOutcomes()
    in_flight: set[asyncio.Future[BatchOutcomes]] = set()
    groups = _groups(planned_batches(spool_path, batch_size, run_id), batches_per_task_run)
    for number, group in enumerate(groups):
        named = deliver_group.with_options(task_run_name=f"deliver-batches-{number:05d}")
        in_flight.add(
            asyncio.ensure_future(
                named(quote(group), client, limiter, ledger, run_id, policy, on_outcome)
            )
        )
        if len(in_flight) >= TASK_RUNS_IN_FLIGHT:
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                outcomes.extend(future.result())
    for future in asyncio.as_completed(in_flight):
        outcomes.extend(await future)
    return outcomes


def write_dry_run(spool_path: Path, out_dir: Path, batch_size: int, run_id: str) -> list[Batch]:
    """Write each planned request body to ``out_dir`` (owner-only: it holds card data)."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    written: list[Batch] = []
    for planned in planned_batches(spool_path, batch_size, run_id):
        batch = planned.batch
        path = out_dir / f"{len(written) + 1:06d}-{batch.method}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as sink:
            sink.write(batch.body)
        written.append(batch)
    return written
