"""`customer-sync replay`: re-send the dead letters of earlier runs now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from customer_sync.cli.options import ApiUrl, Concurrency, DryRun, RunReport, State, Wait, lock_wait

if TYPE_CHECKING:
    from customer_sync.run.report import SyncResult


def replay(
    api_url: ApiUrl = None,
    concurrency: Concurrency = 8,
    dry_run: DryRun = None,
    wait: Wait = 0.0,
    state: State = None,
    report: RunReport = None,
) -> int:
    """Re-send the dead letters of earlier runs.

    What the partner acknowledges leaves the dead letters.
    """
    from customer_sync.cli.cmd_run import (
        check_before_the_flow,
        exit_after,
        print_result,
        start_flow_server,
        telling_where,
    )

    start_flow_server()
    from customer_sync.run.report import watching_reports

    with watching_reports() as reports, telling_where(reports, state):
        check_before_the_flow(
            api_url=api_url,
            dry_run=dry_run,
            batch_size=50,
            concurrency=concurrency,
            state_dir=state,
            report=report,
        )
        import asyncio

        from customer_sync.flows.prefect_setup import wait_for_prefect_server
        from customer_sync.flows.replay import replay_dead_letters

        try:
            wait_for_prefect_server()
            result = asyncio.run(
                _replay_result(
                    replay_dead_letters,
                    api_url,
                    state,
                    dry_run,
                    concurrency,
                    report,
                    lock_wait(wait),
                )
            )
        except Exception as error:
            return exit_after(error)
        print_result(result)
    return result.exit_status


async def _replay_result(
    replay_dead_letters: Any,
    api_url: str | None,
    state: str | None,
    dry_run: str | None,
    concurrency: int,
    report: str | None,
    wait: float | None,
) -> SyncResult:
    """The replay's result, read from its final state: an incomplete replay (a Failed
    state in Prefect) still gives its numbers and exit status 1."""
    from customer_sync.flows.states import aresult_of

    final = await replay_dead_letters(
        api_url=api_url,
        state_dir=state,
        dry_run=dry_run,
        concurrency=concurrency,
        report=report,
        wait=wait,
        return_state=True,
    )
    return await aresult_of(final)
