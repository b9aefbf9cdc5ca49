"""The plan before a run: per customer what a run would do, and for an update what changed.

``plan_extract`` reads and validates the extract as a run does (whole, or in chunks above
``WHOLE_CUSTOMERS``), plans every valid customer against the ledger (``transforms.plan``)
and compares each update's parts with the acknowledged document's (``transforms.changes``).
It adds the held-back customers (with their reasons) and the absent ones (held by the
partner, missing tonight). Nothing is written, nothing is sent; no postal code or card
number is in any row.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson

from customer_sync.transforms.changes import part_changes, parts_of, read_parts
from customer_sync.transforms.enrollment import still_enrolled
from customer_sync.transforms.refusals import refusal_reasons

if TYPE_CHECKING:
    import pandas as pd

    from customer_sync.chunking.pool import PreparedChunk
    from customer_sync.ledger.records import DeadLetterNote

PLAN_ACTIONS: Final = (
    "create",
    "update",
    "dead-letter retry",
    "unchanged",
    "held back",
    "absent",
)
PLAN_COLUMNS: Final = ("sourceCustomerId", "action", "method", "reason", "changes")


class PlanningLedger(Protocol):
    """What the plan reads from a ledger (SQLite and PostgreSQL alike)."""

    def acknowledged_fingerprints(self, customer_ids: Sequence[str]) -> dict[str, str]: ...

    def dead_letter_ids(self, customer_ids: Any = None) -> set[str]: ...

    def dead_letter_note(self, customer_id: str) -> DeadLetterNote | None: ...

    def acknowledged_ids(self) -> list[str]: ...

    def document_parts(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]: ...


@dataclass(frozen=True)
class PlanRow:
    """One customer of the plan. ``changes``: what differs from the acknowledged document
    (an update), why it is held back, or what the partner said last time."""

    sourceCustomerId: str  # the partner's field name, as in every output
    action: str
    method: str | None
    reason: str
    changes: tuple[str, ...] = ()

    def as_record(self) -> dict[str, Any]:
        return {
            "sourceCustomerId": self.sourceCustomerId,
            "action": self.action,
            "method": self.method,
            "reason": self.reason,
            "changes": list(self.changes),
        }


@dataclass(frozen=True)
class CustomerPlan:
    """What a run would do with each customer of an extract, and the counts per action."""

    rows: tuple[PlanRow, ...]
    counts: dict[str, int] = field(default_factory=dict)

    def to_pandas(self) -> pd.DataFrame:
        """One row per customer: ``PLAN_COLUMNS`` (changes ``; ``-joined)."""
        import pandas as pd

        return pd.DataFrame(
            [{**row.as_record(), "changes": "; ".join(row.changes)} for row in self.rows],
            columns=list(PLAN_COLUMNS),
        )

    def records(self) -> list[dict[str, Any]]:
        return [row.as_record() for row in self.rows]

    def summary(self) -> str:
        shown = ", ".join(f"{self.counts[a]:,} {a}" for a in PLAN_ACTIONS if self.counts.get(a))
        return f"{len(self.rows):,} customers: {shown or 'none'}"

    def __repr__(self) -> str:
        return f"CustomerPlan({self.summary()})"


def plan_chunk_rows(
    chunk: PreparedChunk,
    ledger: PlanningLedger,
    *,
    full_refresh: bool = False,
    mode: str = "sync",
) -> list[PlanRow]:
    """The plan rows of one prepared chunk: its valid customers, then its held-back ones."""
    from customer_sync.transforms.plan import plan_customers

    ids: list[str] = chunk.documents.customer_ids.to_pylist()
    fingerprints: list[str] = chunk.fingerprints.to_pylist()
    acknowledged = ledger.acknowledged_fingerprints(ids)
    dead = ledger.dead_letter_ids(ids)
    plan = plan_customers(
        list(zip(ids, fingerprints, strict=True)),
        acknowledged,
        dead,
        full_refresh=full_refresh,
        mode=mode,  # type: ignore[arg-type]
    )
    compared = {
        cid: acknowledged[cid]
        for cid, fp in zip(ids, fingerprints, strict=True)
        if cid in acknowledged and acknowledged[cid] != fp
    }
    old_parts = ledger.document_parts(compared) if compared else {}
    documents = chunk.documents.documents
    rows: list[PlanRow] = []
    frame = plan.frame
    for position, (cid, action, method, reason) in enumerate(
        zip(
            frame["sourceCustomerId"],
            frame["action"],
            frame["method"],
            frame["reason"],
            strict=True,
        )
    ):
        changes: list[str] = []
        if cid in compared:
            new = parts_of(orjson.loads(documents[position].as_py()))
            changes = part_changes(read_parts(old_parts.get(cid)), new)
        shown_action = "dead-letter retry" if reason == "dead-letter" else str(action)
        if reason == "dead-letter":
            changes = _refusal_lines(ledger.dead_letter_note(cid)) + changes
        shown_method = None if _missing(method) else str(method)
        rows.append(PlanRow(cid, shown_action, shown_method, str(reason), tuple(changes)))
    held = chunk.validation.held_back
    for cid, reasons in zip(held["sourceCustomerId"], held["reasons"], strict=True):
        lines = tuple(str(reasons).split("|")) if not _missing(reasons) else ()
        rows.append(PlanRow("" if _missing(cid) else str(cid), "held back", None, "invalid", lines))
    return rows


def absent_plan_rows(absent: Sequence[str]) -> list[PlanRow]:
    """One ``absent`` row per id: held by the partner, not in the extract."""
    return [
        PlanRow(cid, "absent", None, "absent", ("held by the partner, not in this extract",))
        for cid in absent
    ]


def customer_plan(rows: Sequence[PlanRow]) -> CustomerPlan:
    """The plan of these rows, with the counts per action."""
    counts = Counter(row.action for row in rows)
    return CustomerPlan(tuple(rows), {a: counts.get(a, 0) for a in PLAN_ACTIONS})


def write_plan(plan: CustomerPlan, folder: Path) -> tuple[Path, Path]:
    """``plan.json`` (records) and ``plan.csv`` (changes ``; ``-joined, cells that look like
    formulas neutralised) in ``folder``, owner-only. No card data or postal code is in them."""
    import csv
    import io

    from customer_sync.adapters.csv_safety import neutralised

    as_json = folder / "plan.json"
    as_csv = folder / "plan.csv"
    _write_private(as_json, orjson.dumps(plan.records(), option=orjson.OPT_INDENT_2))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PLAN_COLUMNS)
    for record in plan.records():
        record["changes"] = "; ".join(record["changes"])
        writer.writerow(
            [neutralised("" if record[c] is None else str(record[c])) for c in PLAN_COLUMNS]
        )
    _write_private(as_csv, text.getvalue().encode())
    return as_json, as_csv


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as sink:
        os.fchmod(fd, 0o600)
        sink.write(data)


def plan_extract(
    source: str | None,
    ledger: PlanningLedger,
    *,
    customers: str | None = None,
    accounts: str | None = None,
    cards: str | None = None,
    rename: Mapping[str, Any] | None = None,
    full_refresh: bool = False,
    mode: str = "sync",
    chunk_customers: int | None = None,
) -> CustomerPlan:
    """What a run of this extract against ``ledger`` would do with each customer."""
    rows: list[PlanRow] = []
    seen: set[str] = set()
    for chunk in _prepared(source, customers, accounts, cards, rename, chunk_customers):
        chunk_rows = plan_chunk_rows(chunk, ledger, full_refresh=full_refresh, mode=mode)
        seen.update(row.sourceCustomerId for row in chunk_rows)
        rows.extend(chunk_rows)
    absent = sorted(set(ledger.acknowledged_ids()) - seen)
    if absent:  # those whose enrollment an earlier run ended are not a question any more
        absent = still_enrolled(absent, ledger.acknowledged_fingerprints(absent))
    rows.extend(absent_plan_rows(absent))
    return customer_plan(rows)


def _prepared(
    source: str | None,
    customers: str | None,
    accounts: str | None,
    cards: str | None,
    rename: Mapping[str, Any] | None,
    chunk_customers: int | None,
) -> Iterator[PreparedChunk]:
    """The extract prepared as a run prepares it: whole when small, else in chunks."""
    from customer_sync.adapters.readers import locate_tables, read_extract
    from customer_sync.chunking.partitioner import (
        DEFAULT_CHUNK_CUSTOMERS,
        estimate_rows,
        partitions_for,
    )
    from customer_sync.chunking.pool import (
        WHOLE_CUSTOMERS,
        default_workers,
        prepare_validation,
        prepared_chunks,
    )
    from customer_sync.transforms.validate import validate_extract

    names = dict(rename) if rename else None
    files = locate_tables(source, customers=customers, accounts=accounts, cards=cards)
    size = estimate_rows(files["customers"])
    partitions = partitions_for(size, chunk_customers or DEFAULT_CHUNK_CUSTOMERS)
    if size <= WHOLE_CUSTOMERS or partitions == 1:
        extract = read_extract(rename=names, **files)
        yield prepare_validation(validate_extract(extract))
        return
    with tempfile.TemporaryDirectory(prefix="customer-sync-plan-") as work:
        yield from prepared_chunks(
            files, Path(work) / "chunks", partitions, rename=names, workers=default_workers()
        )


def _refusal_lines(note: DeadLetterNote | None) -> list[str]:
    if note is None:
        return []
    http = f"HTTP {note.http_status}" if note.http_status else "no answer"
    prefix = "partner refused" if note.kind == "rejected" else f"last send failed ({http})"
    return [f"{prefix}: {reason}" for reason in refusal_reasons(note.answer)]


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


class _NoLedger:
    """A ledger that does not exist yet: the partner holds nothing, everything is created."""

    def acknowledged_fingerprints(self, customer_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def dead_letter_ids(self, customer_ids: Any = None) -> set[str]:
        return set()

    def dead_letter_note(self, customer_id: str) -> DeadLetterNote | None:
        return None

    def acknowledged_ids(self) -> list[str]:
        return []

    def document_parts(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]:
        return {}

    def close(self) -> None:
        return None


@contextlib.contextmanager
def planning_ledger(state: str | os.PathLike[str] | None) -> Iterator[PlanningLedger]:
    """The ledger ``state`` names, read-only; an empty one when none was written yet."""
    from customer_sync.ledger.factory import ledger_location, open_ledger
    from customer_sync.schemas.errors import ConfigError

    try:
        ledger: Any = open_ledger(ledger_location(state), read_only=True)
    except ConfigError as error:
        if not str(error).startswith("no ledger at"):
            raise
        ledger = _NoLedger()
    try:
        yield ledger
    finally:
        ledger.close()
