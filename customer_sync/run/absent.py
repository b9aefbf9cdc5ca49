"""Who disappeared, judged once preparation has seen every id of the extract.

The customers the partner holds (acknowledged in the ledger) minus every id read tonight,
valid or held back. With ``--shard`` only the known customers of this shard's chunks can
be judged (the other shards read the other ids), so the count, the file and the guard
are about this shard's share. The ids go to ``absent-customers.txt`` in the run folder,
owner-only. Streaming judges at the end (it has sent already): reported, not guarded.
"""

from __future__ import annotations

import os
from pathlib import Path

from customer_sync.flows.prepare import ChunkLayout, Preparation
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.report import SyncResult
from customer_sync.transforms.absent import absent_customers, ids_of_partitions
from customer_sync.transforms.enrollment import still_enrolled

ABSENT_FILE = "absent-customers.txt"


def judge_absent(
    result: SyncResult,
    preparation: Preparation,
    ledger: SqliteLedger,
    layout: ChunkLayout,
    run_dir: Path,
    ids: list[str] | None = None,
) -> tuple[int, int]:
    """Fill the result's absent fields and write the ids' file; (absent, known) judged.
    The absent ids are appended to ``ids`` when given."""
    known = ledger.acknowledged_ids()
    if layout.owned is not None:
        known = ids_of_partitions(known, layout.partitions, layout.owned)
    absent = absent_customers(known, preparation.seen_ids)
    # absent customers whose enrollment an earlier run ended (--end-enrollment-of-absent)
    # are dealt with: neither absent nor held for the guard's share
    enrolled = still_enrolled(absent, ledger.acknowledged_fingerprints(absent)) if absent else []
    ended = len(absent) - len(enrolled)
    absent = enrolled
    result.enrollment_already_ended = ended
    result.customers_known = len(known) - ended
    result.customers_absent = len(absent)
    if absent:
        result.absent_customers = str(write_ids(run_dir / ABSENT_FILE, absent))
    if ids is not None:
        ids.extend(absent)
    return len(absent), len(known) - ended


def write_ids(path: Path, ids: list[str]) -> Path:
    """One id a line, the file owner-only (0600) from its creation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(f"{cid}\n" for cid in ids)
    return path
