"""`customer-sync demo`: the sample extract delivered to an in-process stand-in partner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from customer_sync.cli.options import (
    AllowAbsent,
    AllowMassUpdate,
    BatchSize,
    Concurrency,
    DryRun,
    FullRefresh,
    MaxAbsentShare,
    MaxUpdateShare,
    Mode,
    NoProgress,
    RunReport,
    State,
)
from customer_sync.cli.stand_in import with_stand_in_options

if TYPE_CHECKING:
    from customer_sync.devtools.stub_server import StubFaults

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "data"


def sample_folder() -> Path:
    """The sample extract: ./data in a checkout, or the copy shipped inside the wheel."""
    if (SAMPLE_DATA / "customers.csv").is_file():
        return SAMPLE_DATA
    return Path(__file__).resolve().parent / "_sample_data"


@with_stand_in_options
def demo(
    batch_size: BatchSize = 50,
    concurrency: Concurrency = 8,
    mode: Mode = "sync",
    full_refresh: FullRefresh = False,
    dry_run: DryRun = None,
    max_update_share: MaxUpdateShare = 0.5,
    allow_mass_update: AllowMassUpdate = False,
    max_absent_share: MaxAbsentShare = 0.1,
    allow_absent: AllowAbsent = False,
    state: State = None,
    report: RunReport = None,
    no_progress: NoProgress = False,
    *,
    faults: StubFaults,
) -> int:
    """The sample extract, sent to an in-process stand-in partner.

    The stand-in's fault options show what retries, refusals and redirects look like.
    The ledger is a temporary folder unless --state is given.
    """
    from customer_sync.cli.cmd_run import (
        built_options,
        check_before_the_flow,
        exit_after,
        print_result,
        progress_setting,
        run_flow,
        start_flow_server,
        telling_where,
    )

    start_flow_server()
    import tempfile

    from customer_sync.devtools.stub_server import serve_stub_in_thread
    from customer_sync.run.report import watching_reports

    with (
        serve_stub_in_thread(faults) as stub,
        tempfile.TemporaryDirectory() as scratch,
        watching_reports() as reports,
    ):
        temporary = None if state else Path(scratch) / "state"
        chosen_state = state or str(temporary)
        with telling_where(reports, chosen_state, temporary=temporary):
            print(f"stand-in partner API listening on {stub.url}")
            check_before_the_flow(
                api_url=stub.url,
                dry_run=dry_run,
                batch_size=batch_size,
                concurrency=concurrency,
                state_dir=chosen_state,
                report=report,
            )
            options = built_options(
                report,
                source=str(sample_folder()),
                api_url=stub.url,
                batch_size=batch_size,
                concurrency=concurrency,
                dry_run=dry_run,
                state_dir=chosen_state,
                full_refresh=full_refresh,
                mode=mode,
                max_update_share=max_update_share,
                allow_mass_update=allow_mass_update,
                max_absent_share=max_absent_share,
                allow_absent=allow_absent,
            )
            try:
                result = run_flow(options, progress=progress_setting(no_progress))
            except Exception as error:
                return exit_after(error)
            print_result(result)
            if not result.dry_run:
                print(f"the stand-in partner accepted {len(stub.accepted):,} customers")
    return result.exit_status
