"""The ``replay-dead-letters`` flow: re-send, on demand, what earlier runs could not deliver.

Dead letters keep the exact document that failed; replay spools them and delivers them
through the same per-batch retries as a normal run. The next normal run would re-send
them anyway (they are planned again because they were never acknowledged); replay is for
"now, without re-reading the extract".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from prefect import flow
from prefect.client.schemas.objects import State
from pydantic import Field

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.adapters.partner_client import PartnerClient
from customer_sync.adapters.spool import SpoolWriter
from customer_sync.adapters.urls import without_user_info
from customer_sync.flows import quiet_errors
from customer_sync.flows.deliver import check_dry_run_folder, deliver_spool, write_dry_run
from customer_sync.flows.landing import scheduled_day
from customer_sync.flows.states import final_state
from customer_sync.flows.sync import (
    apply_outcomes,
    close_run,
    export_dead_letters_of,
    lock_delivery,
    partner_settings,
    state_folder,
)
from customer_sync.ledger.factory import ledger_location, open_ledger
from customer_sync.run.config_check import check_configuration
from customer_sync.run.options import current_hooks
from customer_sync.run.report import SyncResult, write_stopped_report
from customer_sync.schemas.contract import MAX_CUSTOMERS_PER_REQUEST
from customer_sync.schemas.errors import CustomerSyncError

log = logging.getLogger(__name__)


def replay_run_name() -> str:
    """``replay-<day>``, ``-dry-run`` when so: the day it was scheduled for (or started)."""
    from prefect.runtime import flow_run

    name = f"replay-{scheduled_day().isoformat()}"
    return name + ("-dry-run" if flow_run.parameters.get("dry_run") else "")


@flow(name="replay-dead-letters", flow_run_name=replay_run_name, log_prints=False)
async def replay_dead_letters(
    api_url: str | None = None,
    state_dir: str | None = None,
    dry_run: str | None = None,
    concurrency: Annotated[int, Field(ge=1)] = 8,
    batch_size: Annotated[int, Field(ge=1, le=MAX_CUSTOMERS_PER_REQUEST)] = 50,
    report: str | None = None,
    wait: Annotated[float | None, Field(ge=0.0)] = 0.0,
) -> State[Any]:
    """Deliver every dead-lettered customer again, with its method and document.

    It takes the same delivery lock as a run (``wait`` as there); a dry run takes none.
    The per-batch retry policy is a hook (``run_hooks``), not a parameter. Its final
    state follows the outcome as a sync's does (``customer_sync/flows/states.py``).

    Args:
        api_url: The partner's base URL (else $CUSTOMER_SYNC_API_URL).
        state_dir: The ledger's folder or postgresql:// URL, as the runs use it.
        dry_run: Send nothing: write the request bodies to this folder instead.
        concurrency: Requests in flight at once.
        batch_size: Customers per request (1-50).
        report: Where to write the replay's JSON report.
        wait: While another run delivers from the ledger: refuse at once (0), wait at most
            this many seconds, or (null) until it ends.
    """
    retry_policy = current_hooks().retry_policy
    quiet_errors.install()
    state = state_folder(state_dir)
    try:
        check_configuration(
            api_url=api_url,
            dry_run=dry_run,
            batch_size=batch_size,
            concurrency=concurrency,
            state_dir=state,
            report=report,
        )
        if dry_run is not None:
            check_dry_run_folder(Path(dry_run))
    except CustomerSyncError as error:
        write_stopped_report(report, error)
        raise
    ledger = open_ledger(ledger_location(state_dir))
    if dry_run is None:
        lock_delivery(ledger, None, 1, wait)
    letters = ledger.dead_letters()
    shown_url = without_user_info(api_url) if api_url else None
    run_id = ledger.start_run({"replay": True, "dry_run": dry_run, "api_url": shown_url})
    result = SyncResult(run_id=run_id, dry_run=dry_run is not None)
    result.customers_read = len(letters)
    result.customers_planned = len(letters)
    run_dir = state / "runs" / run_id
    spool_path = run_dir / "spool.arrow"
    log.info("Replay %s: %d dead-lettered customers", run_id, len(letters))
    try:
        with SpoolWriter(spool_path) as spool:
            ordered = sorted(letters, key=lambda letter: letter.method)
            spool.write(
                [letter.source_customer_id for letter in ordered],
                [letter.method for letter in ordered],
                [letter.fingerprint for letter in ordered],
                [letter.document for letter in ordered],
            )
        if dry_run is not None:
            write_dry_run(spool_path, Path(dry_run), batch_size, run_id)
            result.dry_run_dir = dry_run
        elif letters:
            settings = await partner_settings(api_url)
            async with PartnerClient(settings) as client:
                outcomes = await deliver_spool(
                    spool_path,
                    client,
                    ledger,
                    run_id,
                    batch_size=batch_size,
                    concurrency=concurrency,
                    policy=retry_policy or RetryPolicy(),
                )
            apply_outcomes(result, outcomes)
            export_dead_letters_of(result, ledger, run_dir)
    except BaseException as error:
        result.stop(error)
        raise
    finally:
        spool_path.unlink(missing_ok=True)
        await close_run(
            result,
            ledger,
            run_id,
            Path(report) if report else run_dir / "report.json",
            {
                "customers_read": result.customers_read,
                "customers_sent": result.customers_sent,
                "customers_failed": result.customers_failed,
                "customers_rejected": result.customers_rejected,
            },
            kind="replay",
        )
    return final_state(result)
