"""`customer-sync dead-letters OUT`: export the dead letters as JSONL (owner-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from customer_sync.cli.options import State


def dead_letters(
    out: Annotated[Path, typer.Argument(help="JSONL file to write (readable by the owner only)")],
    documents: Annotated[
        bool,
        typer.Option("--documents", help="include the documents (card data) in the export"),
    ] = False,
    state: State = None,
) -> int:
    """Export the dead letters as JSONL.

    Who, why, and the partner's requestId of the last attempt; the documents only with
    --documents.
    """
    from customer_sync.ledger.factory import ledger_location, open_ledger

    with open_ledger(ledger_location(state), read_only=True) as ledger:
        count = ledger.export_dead_letters(out, include_documents=documents)
    print(f"wrote {count:,} dead letters to {out}")
    return 0
