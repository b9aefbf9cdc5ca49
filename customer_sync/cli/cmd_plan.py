"""`customer-sync plan SOURCE`: per customer what a run would do, and what changed.

Read-only: the ledger is opened for reading, nothing is written or sent. The table shows
one row per customer that is not unchanged (``--all`` shows those too); JSON and CSV have
every customer. No postal code or card number is ever printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from customer_sync.cli.output import render
from customer_sync.run.planning import PLAN_COLUMNS, CustomerPlan, plan_extract


def main(args: argparse.Namespace) -> int:
    from customer_sync.adapters.readers import parse_rename
    from customer_sync.run.planning import planning_ledger

    rename = parse_rename(args.rename) if args.rename else None
    with planning_ledger(args.state) as ledger:
        plan = plan_extract(
            args.source,
            ledger,
            customers=args.customers,
            accounts=args.accounts,
            cards=args.cards,
            rename=rename,
            full_refresh=args.full_refresh,
            mode=args.mode,
        )
    print(render_plan(plan, args.format, show_unchanged=args.all))
    return 0


def render_plan(plan: CustomerPlan, fmt: str, *, show_unchanged: bool = False) -> str:
    """The plan as a table (its summary below), JSON or CSV (changes ``; ``-joined)."""
    records: list[dict[str, Any]] = plan.records()
    if fmt == "table" and not show_unchanged:
        records = [r for r in records if r["action"] != "unchanged"]
    if fmt != "json":
        records = [{**r, "changes": "; ".join(r["changes"])} for r in records]
    text = render(records, PLAN_COLUMNS, fmt, "plan")
    return f"{text}\n{plan.summary()}" if fmt == "table" else text
