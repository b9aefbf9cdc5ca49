"""Every option the commands share, declared once: its name, help, default and variable.

A command takes one with ``name: SomeOption = default`` (typer reads the ``Annotated``
declaration). Importing this module imports typer only: ``customer-sync --help`` stays
fast, and each command imports what it works with (pandas, Prefect) inside its body.

Variables: ``--api-url`` is read from ``$CUSTOMER_SYNC_API_URL`` by the option itself.
The ledger's variables are named in ``--state``'s help but read by
``customer_sync.ledger.factory.ledger_location``: ``$CUSTOMER_SYNC_LEDGER_URL`` may hold a
password, and an option's value becomes a flow parameter, which Prefect records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Final, Literal

import typer

SOURCE_PANEL = "Extract"
GUARD_PANEL = "Guards (stop before sending)"
DELIVERY_PANEL = "Delivery"
OUTPUT_PANEL = "State and output"

Source = Annotated[
    str | None,
    typer.Argument(
        help="folder (local path or fsspec URL) holding customers, accounts and cards as "
        ".csv or .parquet",
        show_default=False,
    ),
]
CustomersFile = Annotated[
    str | None,
    typer.Option(
        "--customers",
        metavar="PATH",
        help="explicit path of the customers file",
        rich_help_panel=SOURCE_PANEL,
    ),
]
AccountsFile = Annotated[
    str | None,
    typer.Option(
        "--accounts",
        metavar="PATH",
        help="explicit path of the accounts file",
        rich_help_panel=SOURCE_PANEL,
    ),
]
CardsFile = Annotated[
    str | None,
    typer.Option(
        "--cards",
        metavar="PATH",
        help="explicit path of the cards file",
        rich_help_panel=SOURCE_PANEL,
    ),
]
Rename = Annotated[
    str | None,
    typer.Option(
        "--rename",
        metavar="JSON",
        help="column-rename mapping, a JSON file or inline JSON object "
        '(e.g. \'{"cust_id": "sourceCustomerId"}\')',
        rich_help_panel=SOURCE_PANEL,
    ),
]
Rejects = Annotated[
    str | None,
    typer.Option(
        "--rejects",
        metavar="FILE",
        help="where to write the rejects CSV (default: beside --report, else ./rejects.csv)",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
MaxHeldBack = Annotated[
    float,
    typer.Option(
        "--max-held-back",
        metavar="SHARE",
        help="stop before sending when more than this share of customers is held back",
        rich_help_panel=GUARD_PANEL,
    ),
]
MaxUpdateShare = Annotated[
    float,
    typer.Option(
        "--max-update-share",
        metavar="SHARE",
        help="stop before sending when more than this share of the known customers would "
        "be updated",
        rich_help_panel=GUARD_PANEL,
    ),
]
AllowMassUpdate = Annotated[
    bool,
    typer.Option(
        "--allow-mass-update",
        help="send even when --max-update-share is exceeded",
        rich_help_panel=GUARD_PANEL,
    ),
]
MaxAbsentShare = Annotated[
    float,
    typer.Option(
        "--max-absent-share",
        metavar="SHARE",
        help="stop before sending when more than this share of the customers the partner "
        "holds is absent from the extract (a truncated export looks like this)",
        rich_help_panel=GUARD_PANEL,
    ),
]
AllowAbsent = Annotated[
    bool,
    typer.Option(
        "--allow-absent",
        help="send even when --max-absent-share is exceeded",
        rich_help_panel=GUARD_PANEL,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        metavar="URL",
        envvar="CUSTOMER_SYNC_API_URL",
        show_envvar=True,
        help="partner base URL; the bearer token is read from $CUSTOMER_SYNC_API_TOKEN (never "
        "an option: a command line is visible to every user of the machine)",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        metavar="N",
        help="customers per request, 1 to 50 (the partner's limit)",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
Concurrency = Annotated[
    int,
    typer.Option(
        "--concurrency",
        metavar="N",
        help="requests in flight at once (at least 1)",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
FullRefresh = Annotated[
    bool,
    typer.Option(
        "--full-refresh",
        help="send every customer, changed or not",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
Mode = Annotated[
    Literal["sync", "create-only"],
    typer.Option(
        "--mode",
        help="sync: create new customers and update changed ones; create-only: never update",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
DryRun = Annotated[
    str | None,
    typer.Option(
        "--dry-run",
        metavar="DIR",
        help="write the request bodies into DIR and send nothing",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="[SECONDS]",
        help="when another run delivers from the same ledger, wait for it to end (at most "
        "SECONDS, if given; bare --wait: as long as it takes) instead of refusing at once",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
State = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="DIR|URL",
        help="the ledger: a folder (SQLite; default $CUSTOMER_SYNC_STATE_DIR, else ./.state) "
        "or a postgresql:// URL (default $CUSTOMER_SYNC_LEDGER_URL, where a password may go; "
        "never in this option)",
        show_default=False,
        rich_help_panel=OUTPUT_PANEL,
    ),
]
RunReport = Annotated[
    str | None,
    typer.Option(
        "--report",
        metavar="FILE",
        help="write the run report as JSON here (default: the state folder's "
        "runs/<run id>/report.json)",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
NoProgress = Annotated[
    bool,
    typer.Option(
        "--no-progress",
        help="no progress display (it shows only on a terminal anyway)",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
EndEnrollmentOfAbsent = Annotated[
    bool,
    typer.Option(
        "--end-enrollment-of-absent",
        help="send the customers the partner holds that the extract lacks their last "
        "acknowledged tree with enrollment ended (INACTIVE); keeps the planned documents, "
        "card data, in the ledger while on (docs/ledger.md)",
        rich_help_panel=DELIVERY_PANEL,
    ),
]
TableFormat = Annotated[
    Literal["table", "json", "csv"],
    typer.Option("--format", help="a table on the terminal, or JSON, or CSV"),
]


OPTIONAL_VALUES: Final = {"--wait": "inf"}
"""Options whose value may be left out (``--wait`` alone waits as long as it takes): typer
options always take one, so ``with_optional_values`` writes the implied value in."""


def with_optional_values(arguments: Sequence[str]) -> list[str]:
    """``arguments`` with a bare ``--wait`` (last, or before another option) given its
    implied value, as argparse's ``nargs="?"`` did."""
    given = list(arguments)
    written: list[str] = []
    for position, argument in enumerate(given):
        if argument == "--":
            return written + given[position:]
        following = given[position + 1] if position + 1 < len(given) else None
        bare = following is None or (following.startswith("-") and not _is_number(following))
        if argument in OPTIONAL_VALUES and bare:
            written.append(f"{argument}={OPTIONAL_VALUES[argument]}")
        else:
            written.append(argument)
    return written


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def lock_wait(wait: float) -> float | None:
    """``--wait``: 0 refuses at once, a number bounds the wait, bare ``--wait`` (inf) is
    unbounded (None for the flow: a parameter Prefect stores as JSON)."""
    return None if math.isinf(wait) else wait
