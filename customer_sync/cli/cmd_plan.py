"""`customer-sync plan SOURCE`: per customer what a run would do, and what changed.

Read-only: the ledger is opened for reading, nothing is written or sent. The table shows
one row per customer that is not unchanged (``--all`` shows those too) and the counts per
action; JSON and CSV have every customer. No postal code or card number is ever printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from customer_sync.cli.options import (
    AccountsFile,
    CardsFile,
    CustomersFile,
    FullRefresh,
    Mode,
    Rename,
    Source,
    State,
    TableFormat,
)

if TYPE_CHECKING:
    from customer_sync.run.planning import CustomerPlan

ShowAll = Annotated[
    bool, typer.Option("--all", help="list the unchanged customers in the table too")
]


def plan(
    source: Source = None,
    customers: CustomersFile = None,
    accounts: AccountsFile = None,
    cards: CardsFile = None,
    rename: Rename = None,
    state: State = None,
    full_refresh: FullRefresh = False,
    mode: Mode = "sync",
    output: TableFormat = "table",
    show_all: ShowAll = False,
) -> int:
    """What a run would do with each customer, and what changed (nothing is sent).

    Per customer: create, update, dead-letter retry, unchanged, held back or absent; for an
    update the parts that changed (account A12: status OPEN→CLOSED; a card closed).
    """
    from customer_sync.adapters.readers import parse_rename
    from customer_sync.run.planning import plan_extract, planning_ledger

    with planning_ledger(state) as ledger:
        planned = plan_extract(
            source,
            ledger,
            customers=customers,
            accounts=accounts,
            cards=cards,
            rename=parse_rename(rename) if rename else None,
            full_refresh=full_refresh,
            mode=mode,
        )
    print(render_plan(planned, output, show_unchanged=show_all))
    return 0


def render_plan(plan: CustomerPlan, fmt: str, *, show_unchanged: bool = False) -> str:
    """The plan as a table (its summary below), JSON or CSV (changes ``; ``-joined)."""
    from customer_sync.cli.output import render
    from customer_sync.run.planning import PLAN_COLUMNS

    records: list[dict[str, Any]] = plan.records()
    if fmt == "table" and not show_unchanged:
        records = [r for r in records if r["action"] != "unchanged"]
    if fmt != "json":
        records = [{**r, "changes": "; ".join(r["changes"])} for r in records]
    text = render(records, PLAN_COLUMNS, fmt, "plan")
    return f"{text}\n{plan.summary()}" if fmt == "table" else text
