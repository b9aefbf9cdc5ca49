"""The parts of the documents a run plans, kept in the ledger for the next plan's changes,
and (only with the enrollment-ended action on) the documents themselves.

``record_missing_parts`` is called once per prepared chunk (not in a dry run): the
documents whose (customer, fingerprint) has no parts yet get them (``transforms.changes``:
non-sensitive values only). On a nightly run that is the changed and new customers; on the
first run after an upgrade, every customer once. With ``keep_documents`` the same goes for
the documents (card data at rest: see ``customer_sync/run/enrollment.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import pyarrow as pa

from customer_sync.transforms.changes import parts_json

# Documents whose parts are built and written at once: a 150,000-customer chunk would
# otherwise hold every document as Python bytes and every parts row (about +360 MiB).
PARTS_SLICE = 10_000


class PartsLedger(Protocol):
    """What a ledger offers for document parts and kept documents (SQLite and PostgreSQL)."""

    def customers_with_parts(self, fingerprints: Mapping[str, str]) -> set[str]: ...

    def record_document_parts(self, rows: Sequence[tuple[str, str, bytes]]) -> None: ...

    def customers_with_kept_documents(self, fingerprints: Mapping[str, str]) -> set[str]: ...

    def keep_documents(self, rows: Sequence[tuple[str, str, bytes]]) -> None: ...


def record_missing_parts(
    ledger: PartsLedger,
    customer_ids: Sequence[str],
    fingerprints: pa.Array,
    documents: pa.Array,
    *,
    keep_documents: bool = False,
) -> int:
    """Keep the parts of every document whose fingerprint has none yet (and with
    ``keep_documents`` the document itself); how many parts were kept."""
    wanted = dict(zip(customer_ids, fingerprints.to_pylist(), strict=True))
    if keep_documents:
        kept = ledger.customers_with_kept_documents(wanted)
        missing = [i for i, cid in enumerate(customer_ids) if cid not in kept]
        ledger.keep_documents(
            [
                (customer_ids[i], wanted[customer_ids[i]], bytes(document))
                for i, document in zip(missing, _taken(documents, missing), strict=True)
            ]
        )
    present = ledger.customers_with_parts(wanted)
    missing = [i for i, cid in enumerate(customer_ids) if cid not in present]
    for start in range(0, len(missing), PARTS_SLICE):  # bounded memory: a slice at a time
        positions = missing[start : start + PARTS_SLICE]
        ledger.record_document_parts(
            [
                (customer_ids[i], wanted[customer_ids[i]], parts_json(document))
                for i, document in zip(positions, _taken(documents, positions), strict=True)
            ]
        )
    return len(missing)


def _taken(documents: pa.Array, positions: list[int]) -> list[bytes]:
    if not positions:
        return []
    taken: list[bytes] = documents.take(pa.array(positions, type=pa.int64())).to_pylist()
    return taken
