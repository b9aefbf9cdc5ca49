"""`customer-sync run`: validate, plan and deliver an extract through the Prefect flow."""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.readers import parse_rename
from flows.prefect_setup import wait_for_prefect_server
from flows.report import EXIT_ABORTED, SyncResult, summary_lines
from schemas.errors import ConfigError, GuardTripped, InputError


def require_source(args: argparse.Namespace) -> None:
    explicit = [args.customers, args.accounts, args.cards]
    if args.source is None and not all(explicit):
        raise ConfigError("give a SOURCE folder, or all of --customers, --accounts and --cards")


def print_result(result: SyncResult) -> None:
    for line in summary_lines(result):
        print(line)


def run_flow(**parameters: object) -> SyncResult:
    """Run the flow; user-facing errors come out of it as themselves, not as tracebacks."""
    from flows.sync import sync_customers

    wait_for_prefect_server()
    return asyncio.run(sync_customers(**parameters))  # type: ignore[arg-type]


def main(args: argparse.Namespace) -> int:
    require_source(args)
    try:
        result = run_flow(
            source=args.source,
            customers=args.customers,
            accounts=args.accounts,
            cards=args.cards,
            rename=parse_rename(args.rename),
            api_url=args.api_url,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            dry_run=args.dry_run,
            state_dir=args.state,
            full_refresh=args.full_refresh,
            mode=args.mode,
            max_held_back_share=args.max_held_back,
            max_update_share=args.max_update_share,
            allow_mass_update=args.allow_mass_update,
            report=args.report,
            progress=False if args.no_progress else None,
            chunk_customers=args.chunk_customers,
            stream=args.stream,
            shard=args.shard,
        )
    except (GuardTripped, InputError, ConfigError) as error:
        print(f"customer-sync: {error}", file=sys.stderr)
        return EXIT_ABORTED
    print_result(result)
    return result.exit_status
