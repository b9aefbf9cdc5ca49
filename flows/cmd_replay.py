"""`customer-sync replay`: re-send the dead letters of earlier runs now."""

from __future__ import annotations

import argparse
import asyncio

from flows.cmd_run import print_result
from flows.prefect_setup import wait_for_prefect_server


def main(args: argparse.Namespace) -> int:
    from flows.replay import replay_dead_letters

    wait_for_prefect_server()
    result = asyncio.run(
        replay_dead_letters(
            api_url=args.api_url,
            state_dir=args.state,
            dry_run=args.dry_run,
            concurrency=args.concurrency,
            report=args.report,
        )
    )
    print_result(result)
    return result.exit_status
