"""`customer-sync dead-letters OUT`: export the dead letters as JSONL (owner-only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from customer_sync.ledger.factory import ledger_location, open_ledger


def main(args: argparse.Namespace) -> int:
    with open_ledger(ledger_location(args.state), read_only=True) as ledger:
        count = ledger.export_dead_letters(Path(args.out), include_documents=args.documents)
    print(f"wrote {count:,} dead letters to {args.out}")
    return 0
