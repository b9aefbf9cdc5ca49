"""What a write records: the outcome rules, as pure functions, whatever database holds them.

Both stores build their writes here (``LedgerStore`` in ``ledger/store.py``), so a mark, an
outcome and a dead letter mean the same thing on SQLite and PostgreSQL: ``mark_row`` and
``outcome_rows`` turn a batch and its outcome into rows (raising on a missing fingerprint or
document before any transaction), ``customer_results`` says what became of each customer,
and a backend only says how those rows are written (its ``WriteTransaction``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from customer_sync.ledger.records import CustomerResult
from customer_sync.schemas.records import Batch, BatchOutcome


class WriteTransaction(Protocol):
    """One backend's transaction, as the group's writes see it (one time for all)."""

    def mark(self, write: Mark) -> None: ...

    def outcome(self, write: Outcome) -> None: ...


@dataclass(frozen=True, slots=True)
class Mark:
    """A batch's ``sending`` mark: (run_id, batch_id, method, customer_ids as a JSON array,
    customers); the time is the transaction's."""

    row: tuple[object, ...]

    def apply(self, transaction: WriteTransaction) -> None:
        transaction.mark(self)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A batch's outcome, ready to write: its key, its row (state, attempts, http_status,
    request_id, error, request_ids as JSON, acknowledged, rejected, failed: the time and key
    excepted), its acknowledged customers as a JSON object ``{id: fingerprint}``, its dead
    letters (id, fingerprint, method, document, kind, http_status, request_id, answer,
    run_id, batch_id: the time excepted)."""

    key: tuple[str, str]  # (run_id, batch_id)
    method: str
    customer_ids: Sequence[str]
    batch: tuple[object, ...]
    acknowledged: str | None
    dead: tuple[tuple[object, ...], ...]

    def apply(self, transaction: WriteTransaction) -> None:
        transaction.outcome(self)


def mark_row(run_id: str, batch: Batch) -> Mark:
    ids = batch.customer_ids
    return Mark((run_id, batch.batch_id, batch.method, orjson.dumps(ids).decode(), len(ids)))


def outcome_rows(
    run_id: str,
    outcome: BatchOutcome,
    fingerprints: Mapping[str, str],
    documents: Mapping[str, bytes],
) -> Outcome:
    """The rows of an outcome; a missing fingerprint or document raises here, before any
    transaction."""
    ids = outcome.customer_ids
    listed: Sequence[str] | None = getattr(outcome, "acknowledged", None)
    acked: Mapping[str, str]
    dead: list[tuple[object, ...]] = []
    rejected = failed = 0
    if outcome.status == "acknowledged" and not outcome.rejected and listed in (None, ids):
        # the common case: everyone. A planned batch's fingerprints hold exactly its ids in
        # its order (one tuple of the keys compared, identical strings): serialised as given
        if type(fingerprints) is dict and tuple(fingerprints) == ids:
            acked = fingerprints
        else:
            acked = {cid: fingerprints[cid] for cid in ids}
    else:
        acked = some = {}
        for cid, (result, answer) in customer_results(outcome).items():
            if result == "acknowledged":
                some[cid] = fingerprints[cid]
                continue
            if result == "rejected":
                rejected += 1
            else:
                failed += 1
            dead.append(
                (
                    cid,
                    fingerprints[cid],
                    outcome.method,
                    documents[cid],
                    result,
                    outcome.http_status,
                    outcome.request_id,
                    answer,
                    run_id,
                    outcome.batch_id,
                )
            )
    return Outcome(
        (run_id, outcome.batch_id),
        outcome.method,
        ids,
        (
            outcome.status,
            outcome.attempts,
            outcome.http_status,
            outcome.request_id,
            outcome.error,
            orjson.dumps(request_ids(outcome)).decode(),
            len(acked),
            rejected,
            failed,
        ),
        orjson.dumps(acked).decode() if acked else None,
        tuple(dead),
    )


def customer_results(outcome: BatchOutcome) -> dict[str, tuple[CustomerResult, str | None]]:
    """sourceCustomerId -> (what became of it, the partner's answer) for a batch's outcome.

    Customers in ``outcome.rejected`` were rejected with their own answer. An outcome that
    lists its ``acknowledged`` customers (the delivery's ``DeliveryOutcome``) is taken at its
    word: every other customer failed. Otherwise the status says it: ``acknowledged`` and
    ``rejected`` (after a split) mean every other customer was acknowledged, a ``rejected``
    outcome naming no customer was refused whole, and ``failed`` means none was.
    """
    if outcome.status not in ("acknowledged", "rejected", "failed"):
        raise ValueError(f"batch {outcome.batch_id}: cannot record status {outcome.status}")
    listed: Sequence[str] | None = getattr(outcome, "acknowledged", None)
    if listed is not None:
        acknowledged = set(listed)
    elif outcome.status == "acknowledged" or (outcome.status == "rejected" and outcome.rejected):
        acknowledged = set(outcome.customer_ids)
    else:
        acknowledged = set()
    whole: CustomerResult = "rejected" if outcome.status == "rejected" else "failed"
    results: dict[str, tuple[CustomerResult, str | None]] = {}
    for cid in outcome.customer_ids:
        if cid in outcome.rejected:
            results[cid] = ("rejected", outcome.rejected[cid])
        elif cid in acknowledged:
            results[cid] = ("acknowledged", None)
        else:
            results[cid] = (whole, outcome.error)
    return results


def request_ids(outcome: BatchOutcome) -> list[str]:
    """Every requestId of the batch: a ``DeliveryOutcome`` lists them (splits included)."""
    listed: Sequence[str] | None = getattr(outcome, "request_ids", None)
    if listed:
        return list(listed)
    return [outcome.request_id] if outcome.request_id else []
