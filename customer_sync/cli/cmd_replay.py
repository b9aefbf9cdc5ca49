"""`customer-sync replay`: re-send the dead letters of earlier runs now."""

from __future__ import annotations

import argparse
import asyncio

from customer_sync.cli.cmd_run import check_before_the_flow, exit_after, lock_wait, print_result
from customer_sync.flows.prefect_setup import wait_for_prefect_server
from customer_sync.flows.states import aresult_of
from customer_sync.run.report import SyncResult


def main(args: argparse.Namespace) -> int:
    check_before_the_flow(
        api_url=args.api_url,
        dry_run=args.dry_run,
        batch_size=50,
        concurrency=args.concurrency,
        state_dir=args.state,
        report=args.report,
    )
    from customer_sync.flows.replay import replay_dead_letters

    try:
        wait_for_prefect_server()

        async def replay() -> SyncResult:
            state = await replay_dead_letters(  # type: ignore[call-overload]
                api_url=args.api_url,
                state_dir=args.state,
                dry_run=args.dry_run,
                concurrency=args.concurrency,
                report=args.report,
                wait=lock_wait(args),
                return_state=True,
            )
            return await aresult_of(state)  # an incomplete replay still has its numbers

        result = asyncio.run(replay())
    except Exception as error:
        return exit_after(error)
    print_result(result)
    return result.exit_status
