"""The `customer-sync` command line: argument parsing and dispatch to one module per command.

Every command returns an exit status; errors the user can act on are printed as one line
(``customer-sync: <file>: <problem>``), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence

from customer_sync.schemas.errors import CustomerSyncError

# command name -> module holding `main(args: argparse.Namespace) -> int`
_HANDLERS = {
    "validate": "customer_sync.cli.cmd_validate",
    "generate": "customer_sync.cli.cmd_generate",
    "stub-api": "customer_sync.cli.cmd_stub",
    "run": "customer_sync.cli.cmd_run",
    "demo": "customer_sync.cli.cmd_demo",
    "replay": "customer_sync.cli.cmd_replay",
    "dead-letters": "customer_sync.cli.cmd_dead_letters",
    "runs": "customer_sync.cli.cmd_runs",
    "history": "customer_sync.cli.cmd_history",
    "plan": "customer_sync.cli.cmd_plan",
}
# commands that run a Prefect flow: its temporary API server is started at entry, so it
# comes up while the command imports pandas and Prefect (the command waits for it)
_FLOW_COMMANDS = frozenset({"run", "demo", "replay"})

_STATE_HELP = (
    "the ledger: a folder (SQLite; default $CUSTOMER_SYNC_STATE_DIR, else ./.state) or a "
    "postgresql:// URL (default $CUSTOMER_SYNC_LEDGER_URL)"
)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        help="folder (local path or fsspec URL) holding customers, accounts and cards "
        "as .csv or .parquet",
    )
    for table in ("customers", "accounts", "cards"):
        parser.add_argument(f"--{table}", metavar="PATH", help=f"explicit path of the {table} file")
    parser.add_argument(
        "--rename",
        metavar="JSON",
        help="column-rename mapping, a JSON file or inline JSON object "
        '(e.g. \'{"cust_id": "sourceCustomerId"}\')',
    )
    parser.add_argument(
        "--max-held-back",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="stop before sending when more than this share of customers is held back "
        "(default 0.05)",
    )
    parser.add_argument("--rejects", metavar="FILE", help="where to write the rejects CSV")


def _add_wait_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        nargs="?",
        const=math.inf,
        default=0.0,
        metavar="SECONDS",
        help="when another run delivers from the same ledger, wait for it to end (at most "
        "SECONDS, if given) instead of refusing at once",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="customer-sync",
        description="Validate customer/account/card extracts and deliver them to the partner API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="validate an extract and print a summary")
    _add_source_arguments(validate)
    validate.add_argument("--report", metavar="FILE", help="write the summary as JSON")

    generate = commands.add_parser("generate", help="write a synthetic extract of any size")
    generate.add_argument("out", help="folder to write customers, accounts and cards into")
    generate.add_argument("--customers", type=int, default=1000, metavar="N")
    generate.add_argument("--format", choices=("csv", "parquet"), default="csv")
    generate.add_argument("--seed", type=int, default=0)

    stub = commands.add_parser("stub-api", help="serve the stand-in partner API")
    stub.add_argument("--host", default="127.0.0.1")
    stub.add_argument("--port", type=int, default=8080)
    stub.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    stub.add_argument("--fail-share", type=float, default=0.0, metavar="SHARE")
    stub.add_argument("--rate-limit-share", type=float, default=0.0, metavar="SHARE")
    stub.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS")
    stub.add_argument("--drop-share", type=float, default=0.0, metavar="SHARE")
    stub.add_argument("--token-lifetime", type=float, default=3600.0, metavar="SECONDS")
    stub.add_argument("--reject-id", action="append", default=[], metavar="ID")
    stub.add_argument("--anonymous-errors", action="store_true")
    stub.add_argument("--redirect-to", metavar="URL", help="redirect data requests there")
    stub.add_argument("--redirect-status", type=int, default=307, choices=(301, 302, 303, 307, 308))
    stub.add_argument("--redirect-session-to", metavar="URL", help="redirect startSession there")
    stub.add_argument("--echo-errors", action="store_true", help="400s that echo the request")
    stub.add_argument("--ok-with-errors-id", action="append", default=[], metavar="ID")
    stub.add_argument("--expiry-as-500", action="store_true", help="expired session: HTTP 500")
    stub.add_argument("--jwt-tokens", action="store_true", help="JWT-shaped session tokens")

    for name, help_text in (
        ("run", "validate, plan and deliver an extract"),
        ("demo", "run on the sample extract against an in-process stand-in server"),
    ):
        sub = commands.add_parser(name, help=help_text)
        if name == "run":
            _add_source_arguments(sub)
            sub.add_argument(
                "--api-url",
                metavar="URL",
                help="partner base URL (default: $CUSTOMER_SYNC_API_URL)",
            )
            sub.add_argument(
                "--chunk-customers",
                type=int,
                metavar="N",
                help="prepare in chunks of about N customers (default: whole up to 150,000, "
                "else 50,000); memory follows the chunk size",
            )
            sub.add_argument(
                "--stream",
                action="store_true",
                help="send each chunk while the next ones are prepared; the guards then stop "
                "the run after at most the share they allow, not before the first send",
            )
            sub.add_argument(
                "--shard",
                metavar="N/M",
                help="prepare and send only shard N of M (runs of all M shards, in parallel, "
                "deliver the whole extract against one ledger)",
            )
        sub.add_argument("--report", metavar="FILE", help="write the run report as JSON")
        sub.add_argument("--dry-run", metavar="DIR", help="write request bodies here, send nothing")
        sub.add_argument("--batch-size", type=int, default=50, metavar="N")
        sub.add_argument("--concurrency", type=int, default=8, metavar="N")
        sub.add_argument("--state", metavar="DIR|URL", help=_STATE_HELP)
        sub.add_argument("--full-refresh", action="store_true", help="send every customer")
        sub.add_argument("--mode", choices=("sync", "create-only"), default="sync")
        sub.add_argument("--allow-mass-update", action="store_true")
        sub.add_argument("--max-update-share", type=float, default=0.5, metavar="SHARE")
        sub.add_argument("--no-progress", action="store_true", help="no progress display")
        sub.add_argument(
            "--max-absent-share",
            type=float,
            default=0.1,
            metavar="SHARE",
            help="stop before sending when more than this share of the customers the partner "
            "holds is absent from the extract (default 0.1)",
        )
        sub.add_argument("--allow-absent", action="store_true")
        if name == "run":
            _add_wait_argument(sub)

    replay = commands.add_parser("replay", help="re-send the dead letters of earlier runs")
    replay.add_argument("--api-url", metavar="URL")
    replay.add_argument("--state", metavar="DIR|URL", help=_STATE_HELP)
    replay.add_argument("--dry-run", metavar="DIR")
    replay.add_argument("--report", metavar="FILE")
    replay.add_argument("--concurrency", type=int, default=8, metavar="N")
    _add_wait_argument(replay)

    dead = commands.add_parser("dead-letters", help="export the dead letters as JSONL")
    dead.add_argument("out", help="JSONL file to write (readable by the owner only)")
    dead.add_argument("--state", metavar="DIR|URL", help=_STATE_HELP)
    dead.add_argument(
        "--documents", action="store_true", help="include the documents (card data) in the export"
    )

    runs = commands.add_parser("runs", help="list recent runs, or show one run")
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID")
    runs.add_argument("--limit", type=int, default=20, metavar="N")
    history = commands.add_parser("history", help="every send of one customer")
    history.add_argument("customer_id", metavar="CUSTOMER_ID")
    plan = commands.add_parser(
        "plan", help="what a run would do with each customer, and what changed (sends nothing)"
    )
    _add_source_arguments(plan)
    plan.add_argument("--full-refresh", action="store_true", help="plan every customer as sent")
    plan.add_argument("--mode", choices=("sync", "create-only"), default="sync")
    plan.add_argument("--all", action="store_true", help="list unchanged customers in the table")
    for sub in (runs, history, plan):
        sub.add_argument("--state", metavar="DIR|URL", help=_STATE_HELP)
        sub.add_argument("--format", choices=("table", "json", "csv"), default="table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # before anything imports Prefect (it reads its settings once, at import); after the
    # parsing, so that --help imports nothing more
    from customer_sync.flows.prefect_setup import configure_prefect, start_prefect_server

    configure_prefect()
    try:
        if args.command in _FLOW_COMMANDS:
            start_prefect_server()
        handler = importlib.import_module(_HANDLERS[args.command])
        status: int = handler.main(args)
    except CustomerSyncError as error:
        print(f"customer-sync: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print("customer-sync: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
