"""The ``replay-dead-letters`` flow: re-send, on demand, what earlier runs could not deliver.

Dead letters keep the exact document that failed; replay spools them and delivers them
through the same per-batch retries as a normal run. The next normal run would re-send
them anyway (they are planned again because they were never acknowledged); replay is for
"now, without re-reading the extract".
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow

from adapters.delivery import RetryPolicy
from adapters.ledger_factory import ledger_location, open_ledger
from adapters.partner_client import PartnerClient
from adapters.spool import SpoolWriter
from flows.deliver import deliver_spool, write_dry_run
from flows.report import SyncResult, summary_lines, write_report
from flows.sync import apply_outcomes, export_dead_letters_of, partner_settings, state_folder

log = logging.getLogger(__name__)


@flow(name="replay-dead-letters", log_prints=False)
async def replay_dead_letters(
    api_url: str | None = None,
    state_dir: str | None = None,
    dry_run: str | None = None,
    concurrency: int = 8,
    batch_size: int = 50,
    report: str | None = None,
    retry_policy: RetryPolicy | None = None,
) -> SyncResult:
    """Deliver every dead-lettered customer again, with its method and document."""
    state = state_folder(state_dir)
    ledger = open_ledger(ledger_location(state_dir))
    letters = ledger.dead_letters()
    run_id = ledger.start_run({"replay": True, "dry_run": dry_run, "api_url": api_url})
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
    finally:
        spool_path.unlink(missing_ok=True)
        ledger.finish_run(
            run_id,
            "completed" if not result.customers_failed else "incomplete",
            {
                "customers_read": result.customers_read,
                "customers_sent": result.customers_sent,
                "customers_failed": result.customers_failed,
            },
        )
        ledger.close()
        write_report(result, Path(report) if report else run_dir / "report.json")
        for line in summary_lines(result):
            log.info(line)
    return result
