"""The morning-after questions, answered from the ledger as records (for notebooks and the
``runs`` / ``history`` commands alike).

Nothing here reads a document: ids, times, methods, requestIds, fingerprints, statuses and
the partner's answers only, so no card data or postal code can come out.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from customer_sync.ledger.factory import ledger_location, open_ledger, work_folder
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.transforms.refusals import masked

REPORT_FIELDS = (
    "customers_read",
    "customers_valid",
    "customers_held_back",
    "held_back_by_reason",
    "customers_unchanged",
    "customers_sent",
    "customers_created",
    "customers_updated",
    "customers_failed",
    "customers_rejected",
    "rejected_by_reason",
    "customers_known",
    "customers_absent",
    "absent_customers",
    "dead_letters",
    "rejects",
    "reconciles",
    "exit_status",
    "aborted",
)
"""What a run's report contributes to ``runs RUN_ID`` (never its batches' customer lists)."""


@dataclass(frozen=True)
class RunRow:
    """One run, as ``customer-sync runs`` lists it."""

    run_id: str
    started_at: str
    finished_at: str | None
    status: str
    flow_run_id: str | None
    counts: dict[str, int]
    exit_status: int | None
    """From the run's report, when it is still in the run folder."""


@dataclass(frozen=True)
class RunDetail:
    """One run: its row, its report's summary and its batches counted by outcome."""

    run: RunRow
    report: dict[str, Any] = field(default_factory=dict)
    batches_by_state: dict[str, int] = field(default_factory=dict)
    customers_by_state: dict[str, int] = field(default_factory=dict)
    failed_batches: list[dict[str, Any]] = field(default_factory=list)
    """Batches not acknowledged: id, state, method, http status, requestId, error."""


@dataclass(frozen=True)
class SendRow:
    """One send of a customer: when, how, under which requestId, and what became of it."""

    sent_at: str
    finished_at: str | None
    run_id: str
    batch_id: str
    method: str
    request_id: str | None
    fingerprint: str | None
    outcome: str
    """acknowledged, rejected, failed, sending, interrupted, or ``not acknowledged`` (a
    rejected batch's other customers after their record's retention ran out)."""
    answer: str | None = None


def _report_of(ledger: SqliteLedger, run_id: str) -> dict[str, Any]:
    path = run_files_folder(ledger) / "runs" / run_id / "report.json"
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_row(ledger: SqliteLedger, record: Any, report: dict[str, Any] | None = None) -> RunRow:
    if report is None:
        report = _report_of(ledger, record.run_id)
    flow_run_id = record.parameters.get("prefect_flow_run_id")
    exit_status = report.get("exit_status")
    return RunRow(
        run_id=record.run_id,
        started_at=record.started_at,
        finished_at=record.finished_at,
        status=record.status,
        flow_run_id=flow_run_id if isinstance(flow_run_id, str) else None,
        counts=dict(record.counts),
        exit_status=exit_status if isinstance(exit_status, int) else None,
    )


def runs(ledger: SqliteLedger, limit: int | None = 20) -> list[RunRow]:
    """The most recent runs, newest first."""
    return [_run_row(ledger, record) for record in ledger.runs(limit=limit)]


def run_detail(ledger: SqliteLedger, run_id: str) -> RunDetail | None:
    """One run with its report's summary and its batches by outcome; None if unknown."""
    record = ledger.run(run_id)
    if record is None:
        return None
    report = _report_of(ledger, run_id)
    batches = ledger.batches_of_run(run_id)
    by_state: Counter[str] = Counter(b.state for b in batches)
    customers: Counter[str] = Counter()
    for b in batches:
        customers[b.state] += len(b.customer_ids)
    failed = [
        {
            "batch_id": b.batch_id,
            "state": b.state,
            "method": b.method,
            "http_status": b.http_status,
            "requestId": b.request_id,
            "customers": len(b.customer_ids),
            "error": masked(b.error) if b.error else None,
        }
        for b in batches
        if b.state != "acknowledged"
    ]
    return RunDetail(
        run=_run_row(ledger, record, report),
        report={k: report[k] for k in REPORT_FIELDS if k in report},
        batches_by_state=dict(by_state),
        customers_by_state=dict(customers),
        failed_batches=failed,
    )


def history(ledger: SqliteLedger, customer_id: str) -> list[SendRow]:
    """Every send of ``customer_id``, oldest first."""
    note = ledger.dead_letter_note(customer_id)
    rows: list[SendRow] = []
    for send in ledger.customer_sends(customer_id):
        answer = None
        fingerprint = send.acknowledged_fingerprint
        if fingerprint is not None:
            outcome = "acknowledged"
        elif note is not None and (note.run_id, note.batch_id) == (send.run_id, send.batch_id):
            outcome, answer, fingerprint = note.kind, note.answer, note.fingerprint
        elif send.batch_state in ("failed", "sending", "interrupted"):
            outcome = send.batch_state
        elif send.batch_state == "rejected":
            outcome = "not acknowledged"
        else:  # an acknowledged batch whose record of this customer was pruned
            outcome = "acknowledged"
        rows.append(
            SendRow(
                sent_at=send.sent_at,
                finished_at=send.finished_at,
                run_id=send.run_id,
                batch_id=send.batch_id,
                method=send.method,
                request_id=send.request_id,
                fingerprint=fingerprint,
                outcome=outcome,
                answer=masked(answer) if answer else None,
            )
        )
    return rows


def state_ledger(state: str | os.PathLike[str] | None) -> SqliteLedger:
    """The ledger ``state`` names (``--state``: a folder or a PostgreSQL URL, else the
    environment, see ``customer_sync/ledger/factory.py``), opened read-only (a reader never
    blocks a run)."""
    return open_ledger(ledger_location(state), read_only=True)  # type: ignore[return-value]


def run_files_folder(ledger: Any) -> Path:
    """Where the ledger's runs keep their files (``runs/<run_id>/``): the state folder of
    a SQLite ledger, the work folder of a PostgreSQL one."""
    path = getattr(ledger, "path", None)
    return path.parent if isinstance(path, Path) else work_folder(str(ledger.url))


def ledger_name(ledger: Any) -> str:
    """The ledger as a message names it: its file, or its URL (user-info masked)."""
    path = getattr(ledger, "path", None)
    return str(path) if isinstance(path, Path) else str(ledger.url)
