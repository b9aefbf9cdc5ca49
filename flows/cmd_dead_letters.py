"""`customer-sync dead-letters OUT`: export the dead letters as JSONL (owner-only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from adapters.ledger import SqliteLedger
from flows.sync import state_folder


def main(args: argparse.Namespace) -> int:
    with SqliteLedger.open(state_folder(args.state), read_only=True) as ledger:
        count = ledger.export_dead_letters(Path(args.out), include_documents=args.documents)
    print(f"wrote {count:,} dead letters to {args.out}")
    return 0
