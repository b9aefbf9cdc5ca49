"""`customer-sync history CUSTOMER_ID`: every send of one customer, oldest first."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from customer_sync.cli.options import State, TableFormat

COLUMNS = (
    "sent_at",
    "method",
    "outcome",
    "request_id",
    "fingerprint",
    "run_id",
    "batch_id",
    "answer",
)


def history(
    customer_id: Annotated[str, typer.Argument(metavar="CUSTOMER_ID", help="a sourceCustomerId")],
    state: State = None,
    output: TableFormat = "table",
) -> int:
    """Every send of one customer.

    When, POST or PUT, the partner's requestId, the fingerprint, the outcome.
    """
    from customer_sync.cli.output import render
    from customer_sync.ledger.queries import history as sends_of
    from customer_sync.ledger.queries import state_ledger

    with state_ledger(state) as ledger:
        sends = [dataclasses.asdict(s) for s in sends_of(ledger, customer_id)]
    if not sends and output == "table":
        print(f"no send of customer {customer_id} in the ledger")
        return 0
    print(render(sends, COLUMNS, output, f"sends of customer {customer_id}"))
    return 0
