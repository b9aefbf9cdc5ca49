"""A run's session: what every run does around its work, in one place, for sync and replay.

``async with RunSession(...) as session:`` opens the ledger, takes the delivery lock
(unless a dry run), records the run's start and settles batches an earlier run left in
flight; the body prepares and delivers into ``session.result``. On the way out, on every
path: a stopped run's result says why (``result.stop``), the dead letters are exported
beside the report when customers failed, old acknowledgements are pruned, and the run is
closed by ``close_run``: the report written, then the ledger's run row, both with the same
outcome (``customer_sync/run/outcome.py``), then the summary logged.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from customer_sync.flows.artifacts import publish_run_artifacts
from customer_sync.flows.events import FlowKind, emit_run_events
from customer_sync.ledger.factory import ledger_location, open_ledger
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.config_check import state_folder
from customer_sync.run.outcome import run_counts
from customer_sync.run.report import SyncResult, summary_lines, write_report
from customer_sync.schemas.errors import CustomerSyncError, GuardTripped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryClaim:
    """What a delivering run locks in the ledger: its chunks (None: all) of ``partitions``,
    waiting ``wait`` seconds for another run's lock (0: refuse at once; None: no bound)."""

    owned: Sequence[int] | None = None
    partitions: int = 1
    wait: float | None = 0.0


class RunSession:
    """One run's ledger, lock, run row, result and report (see the module's docstring)."""

    def __init__(
        self,
        *,
        state_dir: str | None,
        parameters: Mapping[str, object],
        dry_run: bool,
        report: str | None,
        claim: DeliveryClaim,
        settle_interrupted: bool = True,
        retention_days: int | None = None,
        kind: FlowKind = "sync",
    ) -> None:
        self._state_dir = state_dir
        self._parameters = parameters
        self._dry_run = dry_run
        self._report = report
        self._claim = claim
        self._settle = settle_interrupted
        self._retention_days = retention_days
        self._kind: FlowKind = kind
        self.reporting = False
        """True once the run's own report tells its end (from the close on)."""
        self.held_back: Sequence[Any] = ()
        """Held-back rows for the run's artifact table (set by the body)."""
        self.result = SyncResult(dry_run=dry_run)
        self._ledger: SqliteLedger | None = None
        self.run_dir = Path()

    @property
    def ledger(self) -> SqliteLedger:
        if self._ledger is None:
            raise RuntimeError("the run session is not open")
        return self._ledger

    @property
    def run_id(self) -> str:
        assert self.result.run_id is not None
        return self.result.run_id

    @property
    def spool_path(self) -> Path:
        """The run's spool of planned documents (removed when the session ends)."""
        return self.run_dir / "spool.arrow"

    @property
    def rejects_path(self) -> Path:
        return self.run_dir / "rejects.csv"

    async def __aenter__(self) -> RunSession:
        ledger = open_ledger(ledger_location(self._state_dir))
        if not self._dry_run:  # one delivering run per ledger, before anything is read or sent
            lock_delivery(ledger, self._claim)
        self._ledger = ledger
        if self._dry_run:  # a dry run records no run
            self.result.run_id = f"dry-{uuid.uuid4().hex[:12]}"
        else:
            self.result.run_id = ledger.start_run(self._parameters)
            if self._settle:
                self._settle_interrupted()
        self.run_dir = state_folder(self._state_dir) / "runs" / self.run_id
        return self

    def _settle_interrupted(self) -> None:
        interrupted = self.ledger.settle_interrupted(self.run_id)
        self.result.interrupted_batches_resumed = len(interrupted)
        if interrupted:
            log.warning(
                "%d batches of an earlier run were in flight when it stopped; their customers "
                "are planned again",
                len(interrupted),
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        result = self.result
        guard = str(error) if isinstance(error, GuardTripped) else None
        if error is not None:
            # the outcome (customer_sync/run/outcome.py) says aborted, failed or interrupted
            result.stop(error)
        elif not self._dry_run:
            export_dead_letters_of(result, self.ledger, self.run_dir)
        self.spool_path.unlink(missing_ok=True)
        if not self._dry_run and self._retention_days is not None:
            try:
                self.ledger.prune_acknowledgements(_days_ago(self._retention_days))
            except Exception as failure:  # retention only: the run's record stands
                log.warning("Could not prune old acknowledgements: %s", type(failure).__name__)
        report_path = Path(self._report) if self._report else self.run_dir / "report.json"
        self.reporting = True  # from here on the run's own report tells its end
        await close_run(
            result,
            self.ledger,
            None if self._dry_run else self.run_id,
            report_path,
            run_counts(result),
            held_back=self.held_back,
            kind=self._kind,
            guard=guard,
        )


def lock_delivery(ledger: SqliteLedger, claim: DeliveryClaim) -> None:
    """Take the ledger's delivery lock (held until it closes); refused: close it, raise."""
    try:
        ledger.lock_delivery(claim.owned, claim.partitions, wait=claim.wait)
    except BaseException:
        ledger.close()
        raise


def export_dead_letters_of(result: SyncResult, ledger: SqliteLedger, run_dir: Path) -> None:
    """When customers failed, export the dead letters beside the run's report (owner-only)."""
    if result.customers_failed:
        exported = run_dir / "dead-letters.jsonl"
        ledger.export_dead_letters(exported)
        result.dead_letters = str(exported)


async def close_run(
    result: SyncResult,
    ledger: SqliteLedger,
    run_id: str | None,
    report_path: Path,
    counts: Mapping[str, int],
    *,
    held_back: Sequence[Any] = (),
    kind: FlowKind = "sync",
    guard: str | None = None,
) -> None:
    """End a run on every path: the report written, then the ledger's run row closed, both
    with the same outcome (``result.outcome``), then the summary logged.

    A report that cannot be written (a full disk, a file-size limit) fails the run: the
    ledger records ``failed`` with that reason (it still knows what was sent), and a
    ``ReportNotWritten`` is raised unless an earlier error is already on its way out.
    """
    already_stopped = result.aborted is not None
    try:
        await publish_run_artifacts(result, list(held_back))
    except Exception as error:  # the Prefect UI's copy only: the report and ledger remain
        log.warning("Could not publish the run's artifacts: %s", type(error).__name__)
    not_written: ReportNotWritten | None = None
    try:
        write_report(result, report_path)
    except OSError as error:
        not_written = ReportNotWritten(
            f"{report_path}: cannot write the report ({error.strerror or error}); "
            "the ledger records what was sent"
        )
        result.stop(not_written)
    try:
        if run_id is not None:
            outcome = result.outcome
            ledger.finish_run(run_id, outcome.status, counts, reason=outcome.reason)
    except Exception as error:
        result.stop(error)
        if not_written is None:  # the report must not say more than the ledger could keep
            with contextlib.suppress(OSError):
                write_report(result, report_path)
        raise
    finally:
        ledger.close()
        for line in summary_lines(result):
            log.info(line)
        emit_run_events(result, kind=kind, guard=guard)  # after the ledger: same story
    if not_written is not None and not already_stopped:
        raise not_written


class ReportNotWritten(CustomerSyncError):
    """The run's report could not be written: the run failed (exit 2) whatever it sent."""


def _days_ago(days: int) -> str:
    """UTC text, as the ledger writes times, ``days`` before now."""
    when = datetime.now(UTC) - timedelta(days=max(days, 0))
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


__all__ = [
    "DeliveryClaim",
    "ReportNotWritten",
    "RunSession",
    "close_run",
    "export_dead_letters_of",
    "lock_delivery",
]
