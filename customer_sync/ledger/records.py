"""What the ledger returns, whatever database holds it: its records, and how a row read
back becomes one (both backends select the same columns in the same order).

What a write puts down is ``ledger/outcomes.py``'s; the dead-letter file, ``ledger/export.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from customer_sync.adapters.urls import without_user_info
from customer_sync.schemas.records import Method

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
