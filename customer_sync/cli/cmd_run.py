"""`customer-sync run`: validate, plan and deliver an extract through the Prefect flow."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys

from customer_sync.adapters.readers import parse_rename
from customer_sync.flows.prefect_setup import wait_for_prefect_server
from customer_sync.run.config_check import check_configuration, state_folder
from customer_sync.run.options import SyncOptions
from customer_sync.run.outcome import RunOutcome, stop_of
from customer_sync.run.report import SyncResult, summary_lines, write_stopped_report
from customer_sync.schemas.errors import ConfigError, CustomerSyncError


def require_source(args: argparse.Namespace) -> None:
    explicit = [args.customers, args.accounts, args.cards]
    if args.source is None and not all(explicit):
        raise ConfigError("give a SOURCE folder, or all of --customers, --accounts and --cards")


def lock_wait(args: argparse.Namespace) -> float | None:
    """``--wait``: 0 refuses at once, a number bounds the wait, bare ``--wait`` (inf) is
    unbounded (None for the flow: a parameter Prefect stores as JSON)."""
    wait = float(getattr(args, "wait", 0.0))
    return None if math.isinf(wait) else wait


def print_result(result: SyncResult) -> None:
    for line in summary_lines(result):
        print(line)


def check_before_the_flow(
    *,
    api_url: str | None,
    dry_run: str | None,
    batch_size: int,
    concurrency: int,
    state_dir: str | None,
    report: str | None,
) -> None:
    """The configuration checked before the flow is called: Prefect stores a flow's
    parameters, so a URL with credentials must never reach it. A refused configuration
    also marks the ``--report`` file (when asked for) as this run's, aborted."""
    try:
        check_configuration(
            api_url=api_url,
            dry_run=dry_run,
            batch_size=batch_size,
            concurrency=concurrency,
            state_dir=state_folder(state_dir),
            report=report,
        )
    except ConfigError as error:
        write_stopped_report(report, error)
        raise


def run_flow(options: SyncOptions, *, progress: bool | None = None) -> SyncResult:
    """Run the flow; user-facing errors come out of it as themselves, not as tracebacks.

    ``progress`` (the terminal display) is a hook, not one of the flow's parameters."""
    from customer_sync.flows.sync import run_sync

    wait_for_prefect_server()
    return asyncio.run(run_sync(options, progress=progress))


def exit_after(error: Exception) -> int:
    """One line on stderr for an error that stopped a run, and the exit status its outcome
    has in the report and the ledger (``customer_sync.run.outcome``): never a traceback."""
    stopped = stop_of(error)
    if isinstance(error, CustomerSyncError):
        print(f"customer-sync: {stopped.reason}", file=sys.stderr)
        return error.exit_status
    print(f"customer-sync: the run failed: {stopped.reason}", file=sys.stderr)
    return RunOutcome(stopped.status, stopped.reason).exit_status


def main(args: argparse.Namespace) -> int:
    require_source(args)
    check_before_the_flow(
        api_url=args.api_url,
        dry_run=args.dry_run,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        state_dir=args.state,
        report=args.report,
    )
    options = options_of(args)
    try:
        result = run_flow(options, progress=False if args.no_progress else None)
    except Exception as error:
        return exit_after(error)
    print_result(result)
    return result.exit_status


def options_of(args: argparse.Namespace) -> SyncOptions:
    """The run's options from its flags, validated once (a refusal also marks the
    ``--report`` file as this run's, aborted)."""
    try:
        return SyncOptions.build(
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
            chunk_customers=args.chunk_customers,
            stream=args.stream,
            shard=args.shard,
            wait=lock_wait(args),
            max_absent_share=args.max_absent_share,
            allow_absent=args.allow_absent,
        )
    except ConfigError as error:
        write_stopped_report(args.report, error)
        raise


__all__ = ["check_before_the_flow", "exit_after", "main", "print_result", "run_flow"]
