"""The ``sync-customers-sharded`` flow: one extract, planned once, delivered by M shards
that run as child flow runs of a deployment on a work pool (any worker type).

The story, in order:

1. **Check the configuration** (before the extract is read), as ``sync-customers`` does.
2. **Plan the whole extract** (read, validate, nest, plan against the shared ledger;
   nothing is sent) and check the guards on its totals: held back, mass update, absent.
   A broken export stops here, before any shard is started, so before the first customer
   goes out (docs/scale-out.md, "Guards stay global").
3. **Release the shards**: ``run_deployment`` of the shard deployment
   (``sync-customers/sync-customers-shard``, the ``sync-customers`` flow itself) once per
   shard with ``shard="k/M"``, all at once, each with its share of the partner budget;
   wait for all of them.
4. **Report once**: each shard's counts from the shared ledger (the child's run row,
   found by its Prefect flow-run id), their sum, and the planning phase's totals, as one
   JSON report and one set of artifacts. The parent fails, with counts, when a shard did
   not complete.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_markdown_artifact

from customer_sync.chunking.partitioner import DEFAULT_CHUNK_CUSTOMERS
from customer_sync.chunking.pool import WHOLE_CUSTOMERS
from customer_sync.flows import quiet_errors
from customer_sync.flows.partner_budget import partner_limit
from customer_sync.flows.prepare import Preparation, SourceSpec, chunk_layout, prepare
from customer_sync.flows.run_retries import stop_run_retries
from customer_sync.flows.sync import run_guards
from customer_sync.ledger.factory import ledger_location, open_ledger
from customer_sync.run.absent import judge_absent
from customer_sync.run.config_check import check_configuration, state_folder
from customer_sync.run.options import (
    ChunkOptions,
    ExtractOptions,
    GuardOptions,
    PartnerOptions,
    RunOptions,
    StateOptions,
    SyncOptions,
)
from customer_sync.run.report import SyncResult
from customer_sync.run.sharded_report import (
    ShardedResult,
    ShardRun,
    incomplete_message,
    summary_markdown,
    write_sharded_report,
)
from customer_sync.schemas.errors import ConfigError, CustomerSyncError, GuardTripped
from customer_sync.transforms.plan import absent_guard

log = logging.getLogger(__name__)

SHARD_DEPLOYMENT = "sync-customers/sync-customers-shard"
"""The deployment each shard runs as: the ``sync-customers`` flow without a schedule and
without the nightly deployment's one-run-at-a-time limit (which would run the shards one
after the other)."""
POLL_SECONDS = 2.0
MAX_SHARDS = 64


class ShardsIncomplete(CustomerSyncError):
    """A shard's flow run did not complete: the sharded run failed (with its counts)."""


@flow(name="sync-customers-sharded", log_prints=False, validate_parameters=True)
async def sync_customers_sharded(
    extract: ExtractOptions = ExtractOptions(),  # noqa: B008  # frozen: shared safely
    partner: PartnerOptions = PartnerOptions(),  # noqa: B008
    state: StateOptions = StateOptions(),  # noqa: B008
    run: RunOptions = RunOptions(),  # noqa: B008
    guards: GuardOptions = GuardOptions(),  # noqa: B008
    chunks: ChunkOptions = ChunkOptions(),  # noqa: B008
    shards: int = 2,
    deployment: str = SHARD_DEPLOYMENT,
) -> ShardedResult:
    """Plan the whole extract and check its guards, then deliver it as ``shards`` child
    flow runs of ``deployment`` (``chunks.shard="k/M"``), and report their sum.

    The option groups are those of ``sync-customers`` (``run/options.py``) and go to every
    shard as given, except: ``state.report`` is the sharded run's own report (each shard
    writes its own in its run folder); ``partner.concurrency`` is per shard, and with a
    partner budget on the server (the global concurrency limit ``partner-requests``) at
    most ``budget // shards``, so that all of them deliver at once within the one budget.
    ``run.dry_run`` and ``chunks.shard`` are refused (plan with ``sync-customers``).
    """
    quiet_errors.install()
    result = ShardedResult(shards=shards, parent_flow_run_id=_flow_run_id())
    try:
        options = SyncOptions.from_groups(
            extract=extract, partner=partner, state=state, run=run, guards=guards, chunks=chunks
        )
        report_path = _report_path(options.state_dir, options.report)
        if not 1 <= shards <= MAX_SHARDS:
            raise ConfigError(f"shards must be within 1..{MAX_SHARDS}, not {shards}")
        if options.dry_run is not None or options.shard is not None:
            raise ConfigError(
                "a sharded run sends: run.dry_run and chunks.shard are for sync-customers"
            )
        check_configuration(
            api_url=options.api_url,
            dry_run=None,
            batch_size=options.batch_size,
            concurrency=options.concurrency,
            state_dir=state_folder(options.state_dir),
            report=options.report,
        )
    except CustomerSyncError:
        await stop_run_retries()
        raise
    started = time.perf_counter()
    try:
        preparation = plan_whole_extract(options, report_path.parent, planned=result.planned)
    except GuardTripped as error:
        result.stopped = str(error)
        await _publish(result, report_path)
        await stop_run_retries()
        raise
    except CustomerSyncError:
        await stop_run_retries()
        raise
    log.info(
        "Planned the whole extract: %s customers read, %s held back, %s to send; releasing "
        "%d shards",
        f"{preparation.customers_read:,}",
        f"{preparation.customers_held_back:,}",
        f"{preparation.planned:,}",
        shards,
    )
    result.seconds_by_stage["plan"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    per_shard = await shard_concurrency(options.concurrency, shards)
    children = await asyncio.gather(
        *(
            _run_shard(deployment, shard_parameters(options, k, shards, per_shard), result)
            for k in range(1, shards + 1)
        )
    )
    result.seconds_by_stage["shards"] = round(time.perf_counter() - started, 3)
    result.shard_runs = shard_runs_from_ledger(options.state_dir, children)
    await _publish(result, report_path)
    if result.incomplete:
        raise ShardsIncomplete(incomplete_message(result))
    if not result.reconciles:
        raise ShardsIncomplete(
            f"the shards' counts do not add up to the planned extract: {result.totals} vs "
            f"{result.planned}; see {report_path}"
        )
    return result


def shard_parameters(
    options: SyncOptions, number: int, shards: int, concurrency: int
) -> dict[str, Any]:
    """The parameters of shard ``number`` of ``shards``: the run's option groups, with the
    shard, its concurrency, and no report path (each shard reports in its run folder)."""
    shard = options.model_copy(
        update={"shard": f"{number}/{shards}", "concurrency": concurrency, "report": None}
    )
    return {name: group.model_dump(mode="json") for name, group in shard.groups().items()}


def plan_whole_extract(
    options: SyncOptions, run_dir: Path, *, planned: dict[str, int]
) -> Preparation:
    """The planning phase: the whole extract prepared and planned against the ledger (its
    spool deleted again: nothing is sent), the guards checked on its totals, which are
    put into ``planned``. Raises ``GuardTripped`` for a broken export."""
    spec = SourceSpec(
        options.source, options.customers, options.accounts, options.cards, options.rename
    )
    chunk_customers = options.chunk_customers
    layout = chunk_layout(
        spec,
        chunk_customers=chunk_customers or DEFAULT_CHUNK_CUSTOMERS,
        whole_customers=WHOLE_CUSTOMERS if chunk_customers is None else 0,
    )
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # rejects and spool: card data
    ledger = open_ledger(ledger_location(options.state_dir))
    spool_path = run_dir / "planning" / "spool.arrow"
    try:
        known = ledger.known_customer_count()
        preparation = prepare(
            spec,
            ledger,
            spool_path,
            run_dir / "rejects.csv",
            full_refresh=options.full_refresh,
            mode=options.mode,
            layout=layout,
        )
        planned.update(
            customers_read=preparation.customers_read,
            customers_valid=preparation.customers_valid,
            customers_held_back=preparation.customers_held_back,
            customers_unchanged=preparation.unchanged,
            customers_planned=preparation.planned,
            creates=preparation.creates,
            updates=preparation.updates,
        )
        check = run_guards(
            known_customers=known,
            max_held_back_share=options.max_held_back_share,
            max_update_share=options.max_update_share,
            allow_mass_update=options.allow_mass_update,
        )
        check(preparation)
        absent, known_now = judge_absent(SyncResult(), preparation, ledger, layout, run_dir)
        planned.update(customers_absent=absent, customers_known=known_now)
        absent_guard(absent, known_now, options.max_absent_share, options.allow_absent)
    finally:
        shutil.rmtree(spool_path.parent, ignore_errors=True)  # card data: never kept
        ledger.close()
    return preparation


async def shard_concurrency(concurrency: int, shards: int) -> int:
    """Each shard's requests in flight: its ``concurrency``, or its share of the partner
    budget on the server when there is one (so the shards all deliver at once)."""
    budget = await partner_limit()
    if budget is None:
        return concurrency
    return max(1, min(concurrency, budget // shards))


async def _run_shard(
    deployment: str, parameters: dict[str, Any], result: ShardedResult
) -> tuple[str, Any]:
    """One shard as a child flow run of ``deployment``; its final flow run."""
    from prefect.deployments import run_deployment

    shard = str(parameters["chunks"]["shard"])
    key = f"{result.parent_flow_run_id}:{shard}" if result.parent_flow_run_id else None
    try:
        flow_run = await run_deployment(
            name=deployment,
            parameters=parameters,
            timeout=None,
            poll_interval=POLL_SECONDS,
            idempotency_key=key,
            as_subflow=True,
            flow_run_name=f"shard-{shard.replace('/', '-of-')}",
        )
    except Exception as error:  # not started (no such deployment, the server refused)
        log.error("Shard %s could not be started: %s", shard, _short(error))
        return shard, _NotStarted(f"not started: {_short(error)}")
    return shard, flow_run


class _NotStarted:
    """A shard whose child flow run could not be created."""

    def __init__(self, reason: str) -> None:
        self.id = "-"
        self.state = None
        self.reason = reason


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300].rstrip(": ")


def shard_runs_from_ledger(
    state_dir: str | None, children: list[tuple[str, Any]]
) -> list[ShardRun]:
    """Each child's state from Prefect, its counts from the shared ledger's run row (the
    one whose parameters carry the child's flow-run id)."""
    ledger = open_ledger(ledger_location(state_dir))
    try:
        wanted = {str(flow_run.id) for _, flow_run in children if flow_run.id != "-"}
        rows = {}
        for record in ledger.runs(limit=max(200, 20 * len(children))):
            flow_run_id = record.parameters.get("prefect_flow_run_id")
            if flow_run_id in wanted and flow_run_id not in rows:
                rows[flow_run_id] = record  # newest first: a retried child's last attempt
    finally:
        ledger.close()
    runs: list[ShardRun] = []
    for shard, flow_run in children:
        state = flow_run.state
        record = rows.get(str(flow_run.id))
        if isinstance(flow_run, _NotStarted):
            kind, message = "NOT_STARTED", flow_run.reason
        else:
            kind = state.type.value if state is not None else "UNKNOWN"
            message = state.message if state is not None else None
        runs.append(
            ShardRun(
                shard=shard,
                flow_run_id=str(flow_run.id),
                state=kind,
                message=message,
                run_id=record.run_id if record is not None else None,
                ledger_status=record.status if record is not None else None,
                counts=dict(record.counts) if record is not None else {},
            )
        )
    return runs


async def _publish(result: ShardedResult, report_path: Path) -> None:
    """The one report (JSON, owner-only) and the one summary artifact of the sharded run."""
    write_sharded_report(result, report_path)
    try:
        await acreate_markdown_artifact(
            key="sync-sharded-summary",
            markdown=summary_markdown(result),
            description="customer-sync: the sharded run's summary (sum of its shards)",
        )
    except Exception as error:  # the Prefect UI's copy only: the report remains
        log.warning("Could not publish the sharded run's summary: %s", type(error).__name__)
    log.info("Sharded run %s: report %s", result.status, report_path)


def _report_path(state_dir: str | None, report: str | None) -> Path:
    if report:
        return Path(report)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return (
        state_folder(state_dir)
        / "runs"
        / f"sharded-{stamp}-{uuid.uuid4().hex[:8]}"
        / ("report.json")
    )


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    return str(run.id) if run is not None else None


__all__ = ["SHARD_DEPLOYMENT", "ShardsIncomplete", "sync_customers_sharded"]
