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
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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


class ShardsIncomplete(CustomerSyncError):
    """A shard's flow run did not complete: the sharded run failed (with its counts)."""


@flow(name="sync-customers-sharded", log_prints=False, validate_parameters=True)
async def sync_customers_sharded(
    source: str | None = None,
    customers: str | None = None,
    accounts: str | None = None,
    cards: str | None = None,
    rename: dict[str, Any] | None = None,
    api_url: str | None = None,
    state_dir: str | None = None,
    shards: int = 2,
    deployment: str = SHARD_DEPLOYMENT,
    batch_size: int = 50,
    concurrency: int = 8,
    full_refresh: bool = False,
    mode: Literal["sync", "create-only"] = "sync",
    max_held_back_share: float = 0.05,
    max_update_share: float = 0.5,
    allow_mass_update: bool = False,
    max_absent_share: float = 0.1,
    allow_absent: bool = False,
    chunk_customers: int | None = None,
    retry_outage: bool = False,
    report: str | None = None,
) -> ShardedResult:
    """Plan the whole extract and check its guards, then deliver it as ``shards`` child
    flow runs of ``deployment`` (``shard="k/M"``), and report their sum.

    ``concurrency`` is per shard; with a partner budget on the server (the global
    concurrency limit ``partner-requests``) each shard gets ``budget // shards`` of it
    at most, so that all of them deliver at once within the one budget.
    """
    quiet_errors.install()
    spec = SourceSpec(source, customers, accounts, cards, rename)
    result = ShardedResult(shards=shards, parent_flow_run_id=_flow_run_id())
    report_path = _report_path(state_dir, report)
    try:
        if shards < 1:
            raise ConfigError(f"shards must be at least 1, not {shards}")
        check_configuration(
            api_url=api_url,
            dry_run=None,
            batch_size=batch_size,
            concurrency=concurrency,
            state_dir=state_folder(state_dir),
            report=report,
        )
        preparation = plan_whole_extract(
            spec,
            state_dir,
            report_path.parent,
            chunk_customers=chunk_customers,
            full_refresh=full_refresh,
            mode=mode,
            max_held_back_share=max_held_back_share,
            max_update_share=max_update_share,
            allow_mass_update=allow_mass_update,
            max_absent_share=max_absent_share,
            allow_absent=allow_absent,
            planned=result.planned,
        )
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
    per_shard = await shard_concurrency(concurrency, shards)
    common: dict[str, Any] = {
        "source": source,
        "customers": customers,
        "accounts": accounts,
        "cards": cards,
        "rename": rename,
        "api_url": api_url,
        "state_dir": state_dir,
        "batch_size": batch_size,
        "concurrency": per_shard,
        "full_refresh": full_refresh,
        "mode": mode,
        "max_held_back_share": max_held_back_share,
        "max_update_share": max_update_share,
        "allow_mass_update": allow_mass_update,
        "max_absent_share": max_absent_share,
        "allow_absent": allow_absent,
        "chunk_customers": chunk_customers,
        "retry_outage": retry_outage,
        "progress": False,
    }
    children = await asyncio.gather(
        *(
            _run_shard(deployment, {**common, "shard": f"{k}/{shards}"}, result)
            for k in range(1, shards + 1)
        )
    )
    result.shard_runs = shard_runs_from_ledger(state_dir, children)
    await _publish(result, report_path)
    if result.incomplete:
        raise ShardsIncomplete(incomplete_message(result))
    if not result.reconciles:
        raise ShardsIncomplete(
            f"the shards' counts do not add up to the planned extract: {result.totals} vs "
            f"{result.planned}; see {report_path}"
        )
    return result


def plan_whole_extract(
    spec: SourceSpec,
    state_dir: str | None,
    run_dir: Path,
    *,
    chunk_customers: int | None,
    full_refresh: bool,
    mode: Literal["sync", "create-only"],
    max_held_back_share: float,
    max_update_share: float,
    allow_mass_update: bool,
    max_absent_share: float,
    allow_absent: bool,
    planned: dict[str, int],
) -> Preparation:
    """The planning phase: the whole extract prepared and planned against the ledger (its
    spool deleted again: nothing is sent), the guards checked on its totals, which are
    put into ``planned``. Raises ``GuardTripped`` for a broken export."""
    layout = chunk_layout(
        spec,
        chunk_customers=chunk_customers or DEFAULT_CHUNK_CUSTOMERS,
        whole_customers=WHOLE_CUSTOMERS if chunk_customers is None else 0,
    )
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # rejects and spool: card data
    ledger = open_ledger(ledger_location(state_dir))
    spool_path = run_dir / "planning" / "spool.arrow"
    try:
        known = ledger.known_customer_count()
        preparation = prepare(
            spec,
            ledger,
            spool_path,
            run_dir / "rejects.csv",
            full_refresh=full_refresh,
            mode=mode,
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
            max_held_back_share=max_held_back_share,
            max_update_share=max_update_share,
            allow_mass_update=allow_mass_update,
        )
        check(preparation)
        absent, known_now = judge_absent(SyncResult(), preparation, ledger, layout, run_dir)
        planned.update(customers_absent=absent, customers_known=known_now)
        absent_guard(absent, known_now, max_absent_share, allow_absent)
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

    shard = str(parameters["shard"])
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
