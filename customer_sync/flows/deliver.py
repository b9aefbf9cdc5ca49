"""Delivering the spool: batches of at most 50, grouped into Prefect task runs.

One task run per batch would cost about 4.7 ms each and drop Prefect events at tens of
thousands of batches (see DESIGN.md). So a task run delivers a *group* of batches; each
batch inside it is still retried on its own (adapters.delivery, which logs each retry
once, into the task run's log too), and every outcome is committed to the ledger before
any later batch is sent and before the task run ends. Groups overlap so that concurrency
never drains at a group's end.

A task run still costs a few milliseconds here and more in Prefect's server (its state
changes are events the server records), so large runs get larger groups: at least
``BATCHES_PER_TASK_RUN`` batches each, and few enough that a run has about
``TASK_RUNS_PER_RUN`` of them, up to ``MAX_BATCHES_PER_TASK_RUN`` (a group's batches are
held while it runs; they are offsets into the spool, a few KB each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger
from prefect.utilities.annotations import quote

from customer_sync.adapters.auth import PartnerAuthError
from customer_sync.adapters.delivery import RetryPolicy, deliver_batch
from customer_sync.adapters.partner_client import PartnerClient
from customer_sync.adapters.request_gate import RequestGate
from customer_sync.flows.partner_budget import partner_budget
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.report import BatchOutcomes
from customer_sync.run.spool_batches import PlannedBatch, planned_batches, spool_batch_count
from customer_sync.schemas.errors import ConfigError
from customer_sync.schemas.records import Batch, BatchOutcome

log = logging.getLogger(__name__)

BATCHES_PER_TASK_RUN = 100
TASK_RUNS_PER_RUN = 50
MAX_BATCHES_PER_TASK_RUN = 1000
TASK_RUNS_IN_FLIGHT = 2


def task_run_size(batches: int) -> int:
    """Batches per task run for a delivery of ``batches``: 100 up to 5,000 batches, then
    about 50 task runs (20,000 batches: 400 each), at most 1,000 each."""
    wanted = -(-batches // TASK_RUNS_PER_RUN)
    return min(MAX_BATCHES_PER_TASK_RUN, max(BATCHES_PER_TASK_RUN, wanted))


def _groups(batches: Iterator[PlannedBatch], size: int) -> Iterator[list[PlannedBatch]]:
    group: list[PlannedBatch] = []
    for planned in batches:
        group.append(planned)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class _DocumentsById(Mapping[str, bytes]):
    """A batch's documents by customer id, read only when the ledger asks: it wants the
    documents of dead letters alone, and most batches have none."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    def __getitem__(self, customer_id: str) -> bytes:
        try:
            position = self._batch.customer_ids.index(customer_id)
        except ValueError:
            raise KeyError(customer_id) from None
        return self._batch.documents[position]

    def __iter__(self) -> Iterator[str]:
        return iter(self._batch.customer_ids)

    def __len__(self) -> int:
        return len(self._batch.customer_ids)


# named from a parameter, not with .with_options() per group (that rebuilds the task and
# reads its source again: about 2 ms a group in a profile at 1M customers)
@task(name="deliver-batches", task_run_name="deliver-batches-{number:05d}", cache_policy=NONE)
async def deliver_group(
    number: int,
    group: list[PlannedBatch],
    client: PartnerClient,
    limiter: asyncio.Semaphore,
    ledger: SqliteLedger | None,
    run_id: str,
    policy: RetryPolicy,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
    gate: RequestGate | None = None,
) -> BatchOutcomes:
    """Deliver a group of batches, each with its own retries; record each in the ledger.

    Each retry is logged once, where it happens (``adapters.delivery``): that logger
    reaches this task run's log in Prefect too."""
    run_log = get_run_logger()
    refused: list[PartnerAuthError] = []

    async def _one(planned: PlannedBatch) -> BatchOutcome | None:
        async with limiter:
            if refused:  # our credentials are refused for good: nothing more goes out
                return None
            if ledger is not None:
                # committed before the request goes out, together with every outcome
                # queued before it (group commit on the ledger's writer thread)
                await ledger.amark_sending(run_id, planned.batch)
            try:
                outcome = await deliver_batch(client, planned.batch, policy, gate=gate)
            except PartnerAuthError as error:
                refused.append(error)
                if ledger is not None:
                    # the partner applied none of it: recorded as failed, not left in flight
                    ledger.queue_outcome(
                        run_id,
                        _refused(planned.batch, error),
                        planned.fingerprints,
                        _DocumentsById(planned.batch),
                    )
                return None
            if ledger is not None:
                # queued while this batch still holds its slot: the next batch's mark waits
                # for it, so at most `concurrency` batches are ever in flight in the ledger
                ledger.queue_outcome(
                    run_id, outcome, planned.fingerprints, _DocumentsById(planned.batch)
                )
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

    delivered = await asyncio.gather(*(_one(planned) for planned in group))
    if ledger is not None:
        await ledger.aflush()  # a finished task run's outcomes are all committed
    if refused:
        raise refused[0]
    outcomes = [outcome for outcome in delivered if outcome is not None]
    run_log.info(
        "Delivered %d batches (%d customers): %d acknowledged",
        len(outcomes),
        sum(len(o.customer_ids) for o in outcomes),
        sum(1 for o in outcomes if o.status == "acknowledged"),
    )
    # not a list: Prefect links every item of a returned list to the task run (a leaf here)
    return BatchOutcomes(outcomes)


def _refused(batch: Batch, error: PartnerAuthError) -> BatchOutcome:
    """A batch whose credentials were refused (401 after renewal, or no session): the
    partner applied none of it, so it is failed, with the reason, and never in flight."""
    return BatchOutcome(
        batch_id=batch.batch_id,
        method=batch.method,
        customer_ids=batch.customer_ids,
        status="failed",
        attempts=1,
        http_status=error.status,
        request_id=None,
        error=f"not delivered: {error}",
    )


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
    batches_per_task_run: int | None = None,
    first_task_run: int = 0,
    batch_prefix: str | None = None,
) -> BatchOutcomes:
    """Every spooled document delivered (or failed) once; outcomes in completion order.

    Batch ids start with ``batch_prefix`` (default the run id): a second spool of the same
    run (the enrollment-ended action) needs ids of its own.

    ``batches_per_task_run`` defaults to ``task_run_size`` of the spool's batch count;
    task runs are numbered from ``first_task_run`` (a streamed run's later chunks go on
    from the earlier ones' numbers).

    The partner budget: with a Prefect server that holds the global concurrency limit
    ``partner-requests``, this delivery leases its slots there first (``flows/
    partner_budget.py``) and sends at most that many at once; otherwise ``concurrency``.
    Within that, the requests in flight follow the partner's 429s (AIMD,
    ``adapters/pacing.py``)."""
    if batches_per_task_run is None:
        batches_per_task_run = task_run_size(spool_batch_count(spool_path, batch_size))
    async with partner_budget(concurrency) as slots:
        return await _deliver_groups(
            spool_path,
            client,
            ledger,
            run_id,
            batch_size=batch_size,
            concurrency=slots,
            policy=policy,
            on_outcome=on_outcome,
            batches_per_task_run=batches_per_task_run,
            first_task_run=first_task_run,
            batch_prefix=batch_prefix or run_id,
        )


async def _deliver_groups(
    spool_path: Path,
    client: PartnerClient,
    ledger: SqliteLedger | None,
    run_id: str,
    *,
    batch_size: int,
    concurrency: int,
    policy: RetryPolicy,
    on_outcome: Callable[[BatchOutcome], None] | None,
    batches_per_task_run: int,
    first_task_run: int,
    batch_prefix: str,
) -> BatchOutcomes:
    limiter = asyncio.Semaphore(concurrency)
    gate = RequestGate.for_concurrency(concurrency)
    outcomes = BatchOutcomes()
    in_flight: set[asyncio.Future[BatchOutcomes]] = set()
    cut = planned_batches(spool_path, batch_size, batch_prefix)
    groups = _groups(cut, batches_per_task_run)
    try:
        for number, group in enumerate(groups, start=first_task_run):
            in_flight.add(
                asyncio.ensure_future(
                    deliver_group(
                        number,
                        quote(group),
                        client,
                        limiter,
                        ledger,
                        run_id,
                        policy,
                        on_outcome,
                        gate,
                    )
                )
            )
            if len(in_flight) >= TASK_RUNS_IN_FLIGHT:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    outcomes.extend(future.result())
        for future in asyncio.as_completed(in_flight):
            outcomes.extend(await future)
    except Exception:
        # the other group still running records its outcomes before the run ends (and
        # closes the ledger); a group stops early once the credentials are refused
        await asyncio.gather(*in_flight, return_exceptions=True)
        raise
    controller = gate.controller
    if controller.throttled:
        log.info(
            "The partner answered 429 %d times; requests in flight ended at %d of %d",
            controller.throttled,
            controller.allowed(),
            concurrency,
        )
    return outcomes


DRY_RUN_MARKER = ".customer-sync-dry-run"
"""The file a dry run leaves in its folder: a later dry run may replace what it holds."""
# the request bodies, and the per-customer plan (customer_sync/run/planning.py)
_DRY_RUN_BODY = re.compile(r"^(\d{6}-(POST|PUT)\.json|plan\.(csv|json))$")


def check_dry_run_folder(out_dir: Path) -> None:
    """Refuse a dry-run folder that holds anything we did not write (checked before the
    extract is read): a new or empty folder, or one holding only an earlier dry run's
    marker and bodies, is fine."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: the dry-run folder is a file; give a new or empty folder")
    names = [entry.name for entry in os.scandir(out_dir)]
    if not names:
        return
    foreign = [n for n in names if n != DRY_RUN_MARKER and not _DRY_RUN_BODY.match(n)]
    if DRY_RUN_MARKER not in names or foreign:
        raise ConfigError(
            f"{out_dir}: the dry-run folder is not empty and was not written by a dry run "
            f"({len(names):,} entries); give a new or empty folder"
        )


def write_dry_run(spool_path: Path, out_dir: Path, batch_size: int, run_id: str) -> list[Batch]:
    """Write each planned request body to ``out_dir`` (owner-only: it holds card data).

    An earlier dry run's bodies there are removed first (so no old body is mixed in, or
    keeps an old mode); a folder holding anything else is refused."""
    check_dry_run_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in os.scandir(out_dir):
        if _DRY_RUN_BODY.match(entry.name):
            os.unlink(entry.path)
    marker = os.open(out_dir / DRY_RUN_MARKER, _NEW_PRIVATE_FILE & ~os.O_EXCL, 0o600)
    os.close(marker)
    written: list[Batch] = []
    for planned in planned_batches(spool_path, batch_size, run_id):
        batch = planned.batch
        path = out_dir / f"{len(written) + 1:06d}-{batch.method}.json"
        fd = os.open(path, _NEW_PRIVATE_FILE, 0o600)  # never through a planted link
        with open(fd, "wb") as sink:
            os.fchmod(fd, 0o600)  # whatever the umask
            sink.write(batch.body)
        written.append(batch)
    return written


_NEW_PRIVATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_TRUNC
