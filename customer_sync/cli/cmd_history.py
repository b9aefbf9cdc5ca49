"""`customer-sync history CUSTOMER_ID`: every send of one customer, oldest first."""

from __future__ import annotations

import argparse
import dataclasses

from customer_sync.cli.output import render
from customer_sync.ledger.queries import history, state_ledger

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


def main(args: argparse.Namespace) -> int:
    with state_ledger(args.state) as ledger:
        sends = [dataclasses.asdict(s) for s in history(ledger, args.customer_id)]
    if not sends and args.format == "table":
        print(f"no send of customer {args.customer_id} in the ledger")
        return 0
    print(render(sends, COLUMNS, args.format, f"sends of customer {args.customer_id}"))
    return 0
