"""`customer-sync run`: validate, plan and deliver an extract through the Prefect flow."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from customer_sync.cli.options import (
    DELIVERY_PANEL,
    OUTPUT_PANEL,
    AccountsFile,
    AllowAbsent,
    AllowMassUpdate,
    ApiUrl,
    BatchSize,
    CardsFile,
    Concurrency,
    CustomersFile,
    DryRun,
    EndEnrollmentOfAbsent,
    FullRefresh,
    MaxAbsentShare,
    MaxHeldBack,
    MaxUpdateShare,
    Mode,
    NoProgress,
    Rename,
    RunReport,
    Source,
    State,
    Wait,
    lock_wait,
)

if TYPE_CHECKING:
    from customer_sync.run.options import SyncOptions
    from customer_sync.run.report import SyncResult

ChunkCustomers = Annotated[
    int | None,
    typer.Option(
        "--chunk-customers",
        metavar="N",
        help="prepare in chunks of about N customers (default: whole up to 150,000, else "
        "50,000); memory follows the chunk size",
        show_default=False,
        rich_help_panel=DELIVERY_PANEL,
    ),
]
Stream = Annotated[
    bool,
    typer.Option(
        "--stream",
        help="send each chunk while the next ones are prepared; the guards then stop the run "
        "after at most the share they allow, not before the first send",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
Shard = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="N/M",
        help="prepare and send only shard N of M (runs of all M shards, in parallel, deliver "
        "the whole extract against one ledger)",
        rich_help_panel=DELIVERY_PANEL,
    ),
]

RunRejects = Annotated[
    str | None,
    typer.Option(
        "--rejects",
        metavar="FILE",
        help="also copy the run's rejects CSV here (it is always written into the state "
        "folder's runs/<run id>/)",
        rich_help_panel=OUTPUT_PANEL,
    ),
]


def require_source(
    source: str | None, customers: str | None, accounts: str | None, cards: str | None
) -> None:
    from customer_sync.schemas.errors import ConfigError

    if source is None and not all([customers, accounts, cards]):
        raise ConfigError("give a SOURCE folder, or all of --customers, --accounts and --cards")


def print_result(result: SyncResult) -> None:
    for line in summary_lines_of(result):
        print(line)


def summary_lines_of(result: SyncResult) -> list[str]:
    from customer_sync.run.report import summary_lines

    return summary_lines(result)


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
    from customer_sync.run.config_check import check_configuration, state_folder
    from customer_sync.run.report import write_stopped_report
    from customer_sync.schemas.errors import ConfigError

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


def start_flow_server() -> None:
    """Start Prefect's temporary API server now (when one is needed): it comes up on the
    other core while this process imports pandas and Prefect (the flow waits for it)."""
    from customer_sync.flows.prefect_setup import start_prefect_server

    start_prefect_server()


def run_flow(options: SyncOptions, *, progress: bool | None = None) -> SyncResult:
    """Run the flow; user-facing errors come out of it as themselves, not as tracebacks.

    ``progress`` (the terminal display) is a hook, not one of the flow's parameters."""
    import asyncio

    from customer_sync.flows.prefect_setup import wait_for_prefect_server
    from customer_sync.flows.sync import run_sync

    wait_for_prefect_server()
    return asyncio.run(run_sync(options, progress=progress))


def built_options(report: str | None, **values: object) -> SyncOptions:
    """The run's ``SyncOptions`` from its flags, validated once (a refusal also marks the
    ``--report`` file as this run's, aborted)."""
    from customer_sync.run.options import SyncOptions
    from customer_sync.run.report import write_stopped_report
    from customer_sync.schemas.errors import ConfigError

    try:
        return SyncOptions.build(report=report, **values)
    except ConfigError as error:
        write_stopped_report(report, error)
        raise


def exit_after(error: Exception) -> int:
    """One line on stderr for an error that stopped a run, and the exit status its outcome
    has in the report and the ledger (``customer_sync.run.outcome``): never a traceback."""
    from customer_sync.run.outcome import RunOutcome, stop_of
    from customer_sync.schemas.errors import CustomerSyncError

    stopped = stop_of(error)
    if isinstance(error, CustomerSyncError):
        print(f"customer-sync: {stopped.reason}", file=sys.stderr)
        return error.exit_status
    print(f"customer-sync: the run failed: {stopped.reason}", file=sys.stderr)
    return RunOutcome(stopped.status, stopped.reason).exit_status


def run(
    source: Source = None,
    customers: CustomersFile = None,
    accounts: AccountsFile = None,
    cards: CardsFile = None,
    rename: Rename = None,
    api_url: ApiUrl = None,
    batch_size: BatchSize = 50,
    concurrency: Concurrency = 8,
    mode: Mode = "sync",
    full_refresh: FullRefresh = False,
    dry_run: DryRun = None,
    chunk_customers: ChunkCustomers = None,
    stream: Stream = False,
    shard: Shard = None,
    wait: Wait = 0.0,
    max_held_back: MaxHeldBack = 0.05,
    max_update_share: MaxUpdateShare = 0.5,
    allow_mass_update: AllowMassUpdate = False,
    max_absent_share: MaxAbsentShare = 0.1,
    allow_absent: AllowAbsent = False,
    end_enrollment_of_absent: EndEnrollmentOfAbsent = False,
    state: State = None,
    report: RunReport = None,
    rejects: RunRejects = None,
    no_progress: NoProgress = False,
) -> int:
    """Validate, plan and deliver an extract.

    It runs as the Prefect flow sync-customers.

    Exit status 0 when every customer is accounted for, 1 when some failed (they are
    dead letters: see replay), 2 when the run stopped before sending (bad input or
    configuration, a guard).
    """
    start_flow_server()
    require_source(source, customers, accounts, cards)
    from customer_sync.adapters.readers import parse_rename
    from customer_sync.run.report import watching_reports

    with watching_reports() as reports, telling_where(reports, state):
        check_before_the_flow(
            api_url=api_url,
            dry_run=dry_run,
            batch_size=batch_size,
            concurrency=concurrency,
            state_dir=state,
            report=report,
        )
        options = built_options(
            report,
            source=source,
            customers=customers,
            accounts=accounts,
            cards=cards,
            rename=parse_rename(rename),
            api_url=api_url,
            batch_size=batch_size,
            concurrency=concurrency,
            dry_run=dry_run,
            state_dir=state,
            full_refresh=full_refresh,
            mode=mode,
            max_held_back_share=max_held_back,
            max_update_share=max_update_share,
            allow_mass_update=allow_mass_update,
            chunk_customers=chunk_customers,
            stream=stream,
            shard=shard,
            wait=lock_wait(wait),
            max_absent_share=max_absent_share,
            allow_absent=allow_absent,
            end_enrollment_of_absent=end_enrollment_of_absent,
        )
        try:
            result = run_flow(options, progress=progress_setting(no_progress))
        except Exception as error:
            return exit_after(error)
        print_result(result)
        if rejects and result.rejects and Path(result.rejects).is_file():
            copy_owner_only(result.rejects, rejects)
    return result.exit_status


def progress_setting(no_progress: bool) -> bool | None:
    """The flow's ``progress``: off when asked, with -q or with JSON logs; else None (on
    when standard error is a terminal)."""
    from customer_sync.run.console import progress_allowed_now

    return False if no_progress or not progress_allowed_now() else None


@contextlib.contextmanager
def telling_where(
    reports: list[Path], state: str | None, *, temporary: Path | None = None
) -> Iterator[None]:
    """At the end of the block, however it ends: where the report and the state folder
    are (the last report this process wrote; the state folder the run used)."""
    try:
        yield
    finally:
        for line in where_lines(reports, state, temporary=temporary):
            print(line)


def where_lines(
    reports: list[Path], state: str | None, *, temporary: Path | None = None
) -> list[str]:
    from customer_sync.run.config_check import state_folder
    from customer_sync.schemas.errors import CustomerSyncError

    try:
        folder: str = str(state_folder(state))
    except CustomerSyncError:  # e.g. a password in --state: refused, and not repeated
        folder = "not used (refused)"
    report = str(reports[-1]) if reports else "none written"
    if temporary is not None:
        folder = f"{temporary} (temporary, removed now; give --state to keep it)"
        if reports and reports[-1].is_relative_to(temporary):
            report = f"{reports[-1]} (removed with the state folder)"
    return [f"report: {report}", f"state: {folder}"]


def copy_owner_only(source: str, target: str) -> None:
    """Copy a file that may hold card data; the copy is readable by its owner only."""
    import os
    import shutil

    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with open(source, "rb") as original, os.fdopen(descriptor, "wb") as copy:
        shutil.copyfileobj(original, copy)


__all__ = [
    "built_options",
    "check_before_the_flow",
    "exit_after",
    "print_result",
    "run",
    "run_flow",
]
