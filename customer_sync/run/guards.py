"""The guards of a run, on a preparation's totals: held-back share, mass update, absent.

``run_guards`` gives the check the chunk loop's policy gates delivery with
(``run/chunk_loop.py``): on the whole extract's totals before anything is sent (guards
first), or on the running totals before each chunk (streaming). The absent guard needs
every id of the extract, so it gates guards-first runs only; a stream reports who is absent
once it has sent (``warn_absent_after_stream``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from customer_sync.flows.prepare import ChunkLayout, Preparation
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.absent import judge_absent
from customer_sync.run.chunk_loop import CheckGuards
from customer_sync.run.report import SyncResult
from customer_sync.schemas.errors import GuardTripped
from customer_sync.transforms.plan import mass_update_guard

log = logging.getLogger(__name__)


def run_guards(
    *,
    known_customers: int,
    max_held_back_share: float,
    max_update_share: float,
    allow_mass_update: bool,
) -> CheckGuards:
    """Both guards, on a preparation's totals (all of them, or the running ones when
    streaming). A shard compares its changes with its share of the known customers."""

    def check(preparation: Preparation) -> None:
        held_back_guard_totals(preparation, max_held_back_share)
        mass_update_guard(
            # only documents that changed count: a full refresh or dead-letter re-sends are
            # asked for, a changed document is what a broken export produces
            {"create": preparation.creates, "update": preparation.changed},
            known_customers=round(known_customers * preparation.extract_share),
            max_update_share=max_update_share,
            allow_mass_update=allow_mass_update,
        )

    return check


def held_back_guard_totals(preparation: Preparation, max_share: float) -> None:
    """The held-back guard on the totals of every chunk (so far)."""
    if preparation.customers_read == 0:
        return
    share = preparation.customers_held_back / preparation.customers_read
    if share > max_share:
        raise GuardTripped(
            f"{preparation.customers_held_back:,} of {preparation.customers_read:,} customers "
            f"({share:.1%}) would be held back, above the limit of {max_share:.1%}; nothing was "
            f"sent. See the rejects file {preparation.rejects_path}; raise --max-held-back to "
            "send the valid customers anyway."
        )


def warn_absent_after_stream(
    result: SyncResult,
    preparation: Preparation,
    ledger: SqliteLedger,
    layout: ChunkLayout,
    run_dir: Path,
    max_absent_share: float,
) -> None:
    """A stream has sent already: who is absent is reported, and a share above the guard's
    limit only warned about (the guard itself needs the guards-first default)."""
    absent, known = judge_absent(result, preparation, ledger, layout, run_dir)
    if known and absent > max_absent_share * known:
        log.warning(
            "%d of the %d customers the partner holds are absent from this extract (%.1f%%); "
            "a truncated export looks like this (streaming cannot stop before sending)",
            absent,
            known,
            100.0 * absent / known,
        )
