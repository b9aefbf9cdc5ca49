"""The run report: counts that reconcile, per-batch outcomes, and where the details went.

``SyncResult`` is what the flow returns (to a notebook, the CLI, or Prefect); its JSON form
is the report file. Nothing in it carries card data or postal codes: customer ids,
counts, statuses and the partner's answers only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import orjson

from customer_sync.run.outcome import (
    EXIT_ABORTED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    RunOutcome,
    Stop,
    decide_outcome,
    stop_of,
)
from customer_sync.schemas.records import BatchOutcome
from customer_sync.transforms.refusals import rejected_by_reason

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXIT_ABORTED", "EXIT_INCOMPLETE", "EXIT_OK", "BatchOutcomes", "SyncResult"]


class BatchOutcomes(Sequence[BatchOutcome]):
    """A run's batch outcomes: a read-only sequence that Prefect does not walk into.

    Prefect walks a flow's return value, and a task run's, looking for futures
    (``visit_collection``) through every list, tuple, dict and dataclass. A 1M-customer
    run has 20,000 outcomes of 50 customer ids each: walked as a list, that took about
    3.5 s of CPU after the flow's last line. A ``Sequence`` that is not a ``list`` is a
    leaf to Prefect, and reads like a list to everyone else (``len``, indexing, slicing,
    iteration, ``==`` with a list).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[BatchOutcome] = ()) -> None:
        self._items: list[BatchOutcome] = list(items)

    @overload
    def __getitem__(self, index: int) -> BatchOutcome: ...
    @overload
    def __getitem__(self, index: slice) -> list[BatchOutcome]: ...
    def __getitem__(self, index: int | slice) -> BatchOutcome | list[BatchOutcome]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[BatchOutcome]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BatchOutcomes):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable through extend(), like a list

    def __repr__(self) -> str:
        return f"BatchOutcomes({len(self._items)} outcomes)"

    def extend(self, outcomes: Iterable[BatchOutcome]) -> None:
        self._items.extend(outcomes)


@dataclass
class SyncResult:
    """What one run did, for every input customer.

    ``customers_read == customers_held_back + customers_unchanged + customers_sent
    + customers_failed`` always holds (``reconciles``); in a dry run the planned
    customers count as ``customers_planned`` instead of sent.
    """

    run_id: str | None = None
    dry_run: bool = False
    rows_read: dict[str, int] = field(default_factory=dict)
    customers_read: int = 0
    customers_valid: int = 0
    customers_held_back: int = 0
    held_back_by_reason: dict[str, int] = field(default_factory=dict)
    customers_unchanged: int = 0
    customers_planned: int = 0
    customers_created: int = 0
    customers_updated: int = 0
    customers_sent: int = 0
    customers_failed: int = 0
    customers_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    """The partner's refusals: ``field: message`` (values masked) -> customers."""
    customers_known: int = 0
    """Customers the partner holds that this run could judge (a shard: its share)."""
    customers_absent: int = 0
    """Of those, how many tonight's extract no longer has (the partner keeps them)."""
    absent_customers: str | None = None
    """The file of their ids (owner-only), when there are any."""
    customers_enrollment_ended: int = 0
    """Absent customers whose enrollment was ended at the partner (the opt-in action)."""
    customers_enrollment_end_failed: int = 0
    """Absent customers whose ended tree the partner did not acknowledge (the run is
    incomplete; they are dead letters)."""
    enrollment_end_no_document: int = 0
    """Absent customers without a kept document (acknowledged before the option was on)."""
    enrollment_already_ended: int = 0
    batches: BatchOutcomes = field(default_factory=BatchOutcomes)
    rejects: str | None = None
    dry_run_dir: str | None = None
    dead_letters: str | None = None
    interrupted_batches_resumed: int = 0
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    orphan_accounts: int = 0
    """Account rows with no holder in the customers table (never sent: the run is
    incomplete)."""
    orphan_cards: int = 0
    """Card rows whose account is missing or an orphan."""
    aborted: str | None = None
    """Why the run stopped before its end (a guard, bad input or configuration, or an
    error); None when it ran to the end."""
    stopped_as: Literal["aborted", "failed", "interrupted"] | None = None
    """How it stopped (``customer_sync.run.outcome``): set with ``aborted`` by ``stop``."""

    def __post_init__(self) -> None:
        if not isinstance(self.batches, BatchOutcomes):  # a list given by hand
            self.batches = BatchOutcomes(self.batches)

    @property
    def reconciles(self) -> bool:
        sent_or_planned = self.customers_planned if self.dry_run else self.customers_sent
        accounted = (
            self.customers_held_back
            + self.customers_unchanged
            + sent_or_planned
            + self.customers_failed
        )
        return accounted == self.customers_read

    @property
    def batches_failed(self) -> int:
        return sum(1 for outcome in self.batches if outcome.status != "acknowledged")

    def stop(self, error: BaseException) -> None:
        """Record that ``error`` stopped the run (the first stop is the one reported)."""
        if self.aborted is None:
            stopped = stop_of(error)
            self.aborted, self.stopped_as = stopped.reason, stopped.status

    @property
    def outcome(self) -> RunOutcome:
        """The run's status, exit status and reason (``customer_sync.run.outcome``)."""
        stopped = None
        if self.aborted is not None:
            stopped = Stop(self.stopped_as or "aborted", self.aborted)
        return decide_outcome(
            stop=stopped,
            held_back=self.customers_held_back,
            orphan_rows=self.orphan_accounts + self.orphan_cards,
            rejected=self.customers_rejected,
            failed=self.customers_failed + self.customers_enrollment_end_failed,
        )

    @property
    def exit_status(self) -> int:
        """0 completed, 1 incomplete (held back, orphans, rejected, failed), 2 aborted or
        failed, 130 interrupted: see ``customer_sync.run.outcome``."""
        return self.outcome.exit_status

    @property
    def customers_per_second(self) -> float:
        seconds = self.seconds_by_stage.get("deliver", 0.0)
        return self.customers_sent / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "batches"
        }
        data["batches"] = [_batch_entry(outcome) for outcome in self.batches]
        data["reconciles"] = self.reconciles
        outcome = self.outcome
        data["status"] = outcome.status
        data["reason"] = outcome.reason
        data["exit_status"] = outcome.exit_status
        return data

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)

    def to_pandas(self) -> pd.DataFrame:
        """The run's counts and outcome as a one-row frame (``batches_frame`` for batches)."""
        import pandas as pd

        data = self.to_dict()
        row = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        return pd.DataFrame([row], index=pd.Index([self.run_id], name="run_id")).drop(
            columns="run_id"
        )

    def batches_frame(self) -> pd.DataFrame:
        """One row per batch: id, method, status, HTTP status, attempts, requestId, how many
        customers, how many the partner rejected, and its answer (no document content)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "batch_id": o.batch_id,
                    "method": o.method,
                    "status": o.status,
                    "http_status": o.http_status,
                    "attempts": o.attempts,
                    "requestId": o.request_id,
                    "customers": len(o.customer_ids),
                    "rejected": len(o.rejected),
                    "error": o.error,
                }
                for o in self.batches
            ],
            columns=list(BATCH_COLUMNS),
        )

    def __repr__(self) -> str:
        outcome = self.outcome
        verb = "planned" if self.dry_run else "sent"
        done = self.customers_planned if self.dry_run else self.customers_sent
        return (
            f"SyncResult({self.run_id or '-'}: {outcome.status}, exit {outcome.exit_status}; "
            f"{self.customers_read:,} read, {done:,} {verb}, {self.customers_unchanged:,} "
            f"unchanged, {self.customers_held_back:,} held back, {self.customers_failed:,} "
            f"failed; {len(self.batches):,} batches)"
        )


BATCH_COLUMNS = (
    "batch_id",
    "method",
    "status",
    "http_status",
    "attempts",
    "requestId",
    "customers",
    "rejected",
    "error",
)


def _batch_entry(outcome: BatchOutcome) -> dict[str, Any]:
    return {
        "batch_id": outcome.batch_id,
        "method": outcome.method,
        "requestId": outcome.request_id,
        "status": outcome.status,
        "http_status": outcome.http_status,
        "attempts": outcome.attempts,
        "customers": list(outcome.customer_ids),
        "error": outcome.error,
        "rejected": outcome.rejected,
    }


_watchers: list[list[Path]] = []


@contextlib.contextmanager
def watching_reports() -> Iterator[list[Path]]:
    """The paths of the reports this process writes while the block runs, in order: the
    CLI names the last one at the end of a run, whether the run ended well or not."""
    written: list[Path] = []
    _watchers.append(written)
    try:
        yield written
    finally:
        _watchers.remove(written)


def write_report(result: SyncResult, path: str | os.PathLike[str]) -> Path:
    """Write the JSON report, readable by its owner only like every file a run writes
    (it holds ids and the partner's answers). Raises ``OSError`` (ENOSPC, EFBIG, ...)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = result.to_json()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not /dev/stdout or a pipe
            os.fchmod(fd, 0o600)
        with open(fd, "wb", closefd=False) as sink:
            sink.write(body)
    finally:
        os.close(fd)
    for written in _watchers:
        written.append(target)
    return target


def write_stopped_report(path: str | os.PathLike[str] | None, error: BaseException) -> Path | None:
    """Best effort, for a run stopped before it started (bad configuration, unusable
    input): the report at ``path`` (if one was asked for) says so, so that an older report
    there is not taken for this run's. A report that cannot be written is left alone."""
    if path is None:
        return None
    result = SyncResult()
    result.stop(error)
    try:
        return write_report(result, path)
    except OSError:
        return None


def summary_lines(result: SyncResult) -> list[str]:
    """The run told in a few lines, for the terminal and the Prefect log."""
    rows = ", ".join(f"{table} {count:,}" for table, count in result.rows_read.items())
    lines = [f"rows read: {rows}" if rows else "rows read: none"]
    lines.append(
        f"customers: {result.customers_read:,} read, {result.customers_valid:,} valid, "
        f"{result.customers_held_back:,} held back"
    )
    for reason, count in sorted(result.held_back_by_reason.items(), key=lambda kv: -kv[1]):
        lines.append(f"  held back, {reason}: {count:,}")
    if result.orphan_accounts or result.orphan_cards:
        lines.append(
            f"orphans: accounts {result.orphan_accounts:,}, cards {result.orphan_cards:,} "
            "(no holder in the customers table; not sent)"
        )
    if result.dry_run:
        lines.append(
            f"dry run: {result.customers_planned:,} planned ({result.customers_created:,} create, "
            f"{result.customers_updated:,} update), {result.customers_unchanged:,} unchanged; "
            f"request bodies in {result.dry_run_dir}"
        )
    else:
        lines.append(
            f"delivered: {result.customers_sent:,} sent ({result.customers_created:,} created, "
            f"{result.customers_updated:,} updated), {result.customers_unchanged:,} unchanged, "
            f"{result.customers_failed:,} failed ({result.customers_rejected:,} rejected by the "
            f"partner) in {len(result.batches):,} batches"
        )
        for reason, count in result.rejected_by_reason.items():
            lines.append(f"  rejected, {reason}: {count:,}")
        retried = sum(1 for outcome in result.batches if outcome.attempts > 1)
        if retried:
            lines.append(f"  batches retried: {retried:,}")
    if result.customers_known:
        lines.append(
            f"absent from the extract: {result.customers_absent:,} of the "
            f"{result.customers_known:,} customers the partner holds"
            + (f" (ids in {result.absent_customers})" if result.absent_customers else "")
        )
    ended = result.customers_enrollment_ended + result.customers_enrollment_end_failed
    if ended or result.enrollment_end_no_document or result.enrollment_already_ended:
        lines.append(
            f"enrollment ended: {result.customers_enrollment_ended:,} absent customers "
            f"({result.customers_enrollment_end_failed:,} failed, "
            f"{result.enrollment_already_ended:,} ended before, "
            f"{result.enrollment_end_no_document:,} without a kept document)"
        )
    if result.seconds_by_stage:
        stages = ", ".join(f"{name} {secs:.2f}s" for name, secs in result.seconds_by_stage.items())
        lines.append(f"time: {stages}")
        if result.customers_per_second:
            lines.append(f"throughput: {result.customers_per_second:,.0f} customers/s")
    if result.rejects:
        lines.append(f"rejects: {result.rejects}")
    if result.dead_letters:
        lines.append(f"dead letters: {result.dead_letters}")
    lines.append("counts reconcile" if result.reconciles else "WARNING: counts do not reconcile")
    outcome = result.outcome
    if outcome.status in ("aborted", "failed", "interrupted"):
        lines.append(f"{outcome.status.upper()}: {outcome.reason}")
    elif outcome.status == "incomplete":
        lines.append(f"INCOMPLETE: {outcome.reason}")
    lines.append(f"outcome: {outcome.status} (exit status {outcome.exit_status})")
    return lines


def refusals_by_reason(outcomes: Iterable[BatchOutcome]) -> dict[str, int]:
    """The partner's refusals of these batches grouped by reason (``transforms.refusals``)."""
    return rejected_by_reason(
        answer for outcome in outcomes for answer in outcome.rejected.values()
    )
