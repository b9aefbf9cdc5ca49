"""What the ledger records, whatever database holds it: the records it returns and the rows
each write puts down.

Both ledgers (``SqliteLedger`` in ``customer_sync/ledger/sqlite.py``, ``PostgresLedger`` in
``ledger/postgres.py``) build their writes here, so a mark, an outcome and a dead letter
mean the same thing on either: ``mark_row`` and ``outcome_rows`` turn a batch and its
outcome into rows (raising on a missing fingerprint or document before any transaction),
and a backend only says how those rows are written (its ``WriteTransaction``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import orjson

from customer_sync.adapters.urls import without_user_info
from customer_sync.schemas.records import Batch, BatchOutcome, Method

BatchState = Literal["sending", "acknowledged", "rejected", "failed", "interrupted"]
DeadLetterKind = Literal["rejected", "failed"]
CustomerResult = Literal["acknowledged", "rejected", "failed"]

# Parameter names whose values never reach the ledger (run parameters are kept as JSON).
SECRET_NAME: Final = re.compile(
    r"secret|token|password|passwd|authorization|api_?key|credential|cert|private", re.I
)
REDACTED: Final = "***"


@dataclass(frozen=True)
class RunRecord:
    """One run of the pipeline as the ledger saw it.

    ``status`` is ``running`` until ``finish_run``; ``crashed`` once a later run found it
    stopped without finishing.
    """

    run_id: str
    started_at: str
    finished_at: str | None
    status: str
    parameters: dict[str, Any]
    counts: dict[str, int]
    host: str
    pid: int
    reason: str | None = None
    """Why the run ended as ``status`` says (an error, or what made it incomplete)."""


@dataclass(frozen=True)
class BatchRecord:
    """One request of a run: marked ``sending`` before it went out, then its outcome."""

    run_id: str
    batch_id: str
    method: Method
    customer_ids: tuple[str, ...]
    state: BatchState
    attempts: int
    http_status: int | None
    request_id: str | None
    error: str | None
    sent_at: str
    finished_at: str | None


@dataclass(frozen=True)
class DeadLetter:
    """A customer the partner rejected, or that still failed after its retries.

    ``document`` is the exact JSON that was sent (card data: never log it); ``answer`` is
    the partner's answer or the transport error. Cleared once the customer is acknowledged.
    """

    source_customer_id: str
    fingerprint: str
    method: Method
    document: bytes
    kind: DeadLetterKind
    http_status: int | None
    request_id: str | None
    answer: str | None
    first_failed_at: str
    last_failed_at: str
    failures: int
    run_id: str
    batch_id: str


@dataclass(frozen=True)
class CustomerSend:
    """One batch that carried a customer: how it went out and what became of the batch.

    ``acknowledged_fingerprint`` is the fingerprint the partner acknowledged in this
    batch, None when this send was not acknowledged (or its record was pruned).
    """

    run_id: str
    batch_id: str
    method: Method
    batch_state: BatchState
    http_status: int | None
    request_id: str | None
    sent_at: str
    finished_at: str | None
    acknowledged_fingerprint: str | None


@dataclass(frozen=True)
class DeadLetterNote:
    """A customer's dead letter without its document (no card data): why it failed."""

    fingerprint: str
    kind: DeadLetterKind
    http_status: int | None
    request_id: str | None
    answer: str | None
    run_id: str
    batch_id: str


def now_text() -> str:
    """The current UTC time as the ledger writes it: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    """A run id: sortable by start time, unique across workers."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def redacted(value: object) -> object:
    """``value`` with the values of secret-looking names replaced by ``***``, nested."""
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if SECRET_NAME.search(str(k)) else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return without_user_info(value)  # a URL's user:password@ is a credential too
    return value


def to_json(value: object) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


# --- the rows of a write -------------------------------------------------------------------
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


# --- reading rows back ---------------------------------------------------------------------
# Both backends select these columns in this order, times as the text of ``now_text``.
def run_record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        started_at=row[1],
        finished_at=row[2],
        status=row[3],
        parameters=orjson.loads(row[4]),
        counts=orjson.loads(row[5]) if row[5] else {},
        host=row[6],
        pid=row[7],
        reason=row[8],
    )


def customer_send(row: Sequence[Any]) -> CustomerSend:
    """From CUSTOMER_SENDS' columns: batch_key, run_id, batch_id, method, state,
    http_status, request_id, sent_at, finished_at, the acknowledged fingerprint."""
    return CustomerSend(
        run_id=row[1],
        batch_id=row[2],
        method=row[3],
        batch_state=row[4],
        http_status=row[5],
        request_id=row[6],
        sent_at=row[7],
        finished_at=row[8],
        acknowledged_fingerprint=row[9],
    )


def batch_record(row: Sequence[Any]) -> BatchRecord:
    return BatchRecord(
        run_id=row[0],
        batch_id=row[1],
        method=row[2],
        customer_ids=tuple(orjson.loads(row[3])),
        state=row[4],
        attempts=row[5],
        http_status=row[6],
        request_id=row[7],
        error=row[8],
        sent_at=row[9],
        finished_at=row[10],
    )


def dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        source_customer_id=row[0],
        fingerprint=row[1],
        method=row[2],
        document=bytes(row[3]),
        kind=row[4],
        http_status=row[5],
        request_id=row[6],
        answer=row[7],
        first_failed_at=row[8],
        last_failed_at=row[9],
        failures=row[10],
        run_id=row[11],
        batch_id=row[12],
    )


def export_dead_letters(
    letters: Iterable[DeadLetter], path: Path, *, include_documents: bool = False
) -> int:
    """Write ``letters`` as JSONL (owner-only file, replaced atomically); how many.

    Without ``include_documents`` a line holds the id, method, failure details and the
    partner's answer. With it, also the document that was sent, which is card data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp creates the file 0600
            for letter in letters:
                line: dict[str, object] = {
                    "sourceCustomerId": letter.source_customer_id,
                    "method": letter.method,
                    "kind": letter.kind,
                    "httpStatus": letter.http_status,
                    "requestId": letter.request_id,
                    "answer": letter.answer,
                    "failures": letter.failures,
                    "firstFailedAt": letter.first_failed_at,
                    "lastFailedAt": letter.last_failed_at,
                    "runId": letter.run_id,
                    "batchId": letter.batch_id,
                    "fingerprint": letter.fingerprint,
                }
                if include_documents:
                    line["document"] = orjson.Fragment(letter.document)
                out.write(orjson.dumps(line) + b"\n")
                written += 1
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written
