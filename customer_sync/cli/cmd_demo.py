"""`customer-sync demo`: the sample extract delivered to an in-process stand-in partner."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from customer_sync.cli.cmd_run import check_before_the_flow, exit_after, print_result, run_flow
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.run.options import SyncOptions

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "data"


def sample_folder() -> Path:
    """The sample extract: ./data in a checkout, or the copy shipped inside the wheel."""
    if (SAMPLE_DATA / "customers.csv").is_file():
        return SAMPLE_DATA
    return Path(__file__).resolve().parent / "_sample_data"


def main(args: argparse.Namespace) -> int:
    with serve_stub_in_thread() as stub, tempfile.TemporaryDirectory() as scratch:
        print(f"stand-in partner API listening on {stub.url}")
        state = args.state or str(Path(scratch) / "state")
        check_before_the_flow(
            api_url=stub.url,
            dry_run=args.dry_run,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            state_dir=state,
            report=args.report,
        )
        try:
            options = SyncOptions.build(
                source=str(sample_folder()),
                api_url=stub.url,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                dry_run=args.dry_run,
                state_dir=state,
                full_refresh=args.full_refresh,
                mode=args.mode,
                max_update_share=args.max_update_share,
                allow_mass_update=args.allow_mass_update,
                max_absent_share=args.max_absent_share,
                allow_absent=args.allow_absent,
                report=args.report,
            )
            result = run_flow(options, progress=False if args.no_progress else None)
        except Exception as error:
            return exit_after(error)
        print_result(result)
        if not result.dry_run:
            print(f"the stand-in partner accepted {len(stub.accepted):,} customers")
    return result.exit_status
