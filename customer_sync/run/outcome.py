"""A run's outcome, decided in one place: its status, its exit status and the reason.

The report (``exit_status``, ``status``, ``reason``), the ledger's run row
(``finish_run``), the CLI's exit status and the Prefect state all read it from here, so
they cannot disagree. The table (also in the README, "Exit statuses"):

==============  ====  ==========================================================
status          exit  when
==============  ====  ==========================================================
``completed``   0     every valid customer delivered (or planned, in a dry run)
``incomplete``  1     the run finished, but some customers were held back, some
                      account/card rows are orphans, or the partner rejected or
                      still failed some customers
``aborted``     2     stopped by a tripped guard, unusable input or bad
                      configuration (before sending, or for a stream, before the
                      next chunk)
``failed``      2     an error stopped the run midway: credentials refused (401),
                      a partner URL refused, a full disk, a crash; the ledger
                      knows what was sent
``interrupted`` 130   stopped by the user (Ctrl-C, SIGINT)
==============  ====  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from customer_sync.schemas.errors import ConfigError, CustomerSyncError, GuardTripped, InputError
from customer_sync.schemas.records import BatchOutcome

if TYPE_CHECKING:  # the result and the preparation import this module
    from customer_sync.flows.prepare import Preparation
    from customer_sync.run.report import SyncResult

RunStatus = Literal["completed", "incomplete", "aborted", "failed", "interrupted"]

EXIT_OK: Final = 0
EXIT_INCOMPLETE: Final = 1
EXIT_ABORTED: Final = 2
EXIT_FAILED: Final = 2
EXIT_INTERRUPTED: Final = 130

_EXIT_OF: Final[dict[RunStatus, int]] = {
    "completed": EXIT_OK,
    "incomplete": EXIT_INCOMPLETE,
    "aborted": EXIT_ABORTED,
    "failed": EXIT_FAILED,
    "interrupted": EXIT_INTERRUPTED,
}

# errors that mean "this run should not have started / must not go on": the user fixes
# the input, the options or the threshold, and runs again
_ABORTING: Final = (GuardTripped, InputError, ConfigError)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What became of a run, as a scheduler, the ledger and Prefect should see it."""

    status: RunStatus
    reason: str | None = None
    """Why it is not ``completed``: the error, or the counts that made it incomplete."""

    @property
    def exit_status(self) -> int:
        return _EXIT_OF[self.status]

    @property
    def ok(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class Stop:
    """How a run was stopped by an exception: ``aborted``, ``failed`` or ``interrupted``."""

    status: Literal["aborted", "failed", "interrupted"]
    reason: str


def stop_of(error: BaseException) -> Stop:
    """The stop an exception stands for; its message is the reason (one line).

    A tripped guard, unusable input and bad configuration abort the run; anything else
    (a 401, a refused URL, a full disk, a crash) fails it; Ctrl-C interrupts it.
    """
    if isinstance(error, _ABORTING):
        return Stop("aborted", _one_line(str(error)))
    if isinstance(error, KeyboardInterrupt):
        return Stop("interrupted", "interrupted by the user")
    return Stop("failed", describe_error(error))


def describe_error(error: BaseException) -> str:
    """One line for an unexpected error: its type, and its message when it has one.

    An ``OSError`` is told by its errno text and file name (``strerror``), which never
    holds data, only the path.
    """
    if isinstance(error, CustomerSyncError):
        return _one_line(str(error))
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{type(error).__name__}: {error.strerror}{where}"
    text = _one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decide_outcome(
    *,
    stop: Stop | None,
    held_back: int,
    orphan_rows: int,
    rejected: int,
    failed: int,
) -> RunOutcome:
    """The outcome of a run from how it stopped (if it did) and its counts."""
    if stop is not None:
        return RunOutcome(stop.status, stop.reason)
    parts = [
        f"{count:,} {what}"
        for count, what in (
            (held_back, "customers held back"),
            (orphan_rows, "orphan account/card rows"),
            (rejected, "customers rejected by the partner"),
            (failed - rejected, "customers failed after their retries"),
        )
        if count > 0
    ]
    if parts:
        return RunOutcome("incomplete", "; ".join(parts))
    return RunOutcome("completed")


# --- accounting: what a run's result counts, from its preparation and its batches --------


def apply_preparation(result: SyncResult, preparation: Preparation) -> None:
    """The preparation's totals into the result (what was read, held back, planned)."""
    result.rows_read = dict(preparation.rows_read)
    result.customers_read = preparation.customers_read
    result.customers_valid = preparation.customers_valid
    result.customers_held_back = preparation.customers_held_back
    result.held_back_by_reason = dict(preparation.held_back_by_reason)
    result.customers_unchanged = preparation.unchanged
    result.customers_planned = preparation.planned
    result.rejects = preparation.rejects_path
    result.orphan_accounts = preparation.orphan_accounts
    result.orphan_cards = preparation.orphan_cards
    if result.dry_run:  # nothing is sent: the planned methods are the whole story
        result.customers_created = preparation.creates
        result.customers_updated = preparation.updates


def apply_outcomes(result: SyncResult, outcomes: Sequence[BatchOutcome]) -> None:
    """The batches' outcomes into the result: sent, failed, rejected, created, updated."""
    from customer_sync.run.report import BatchOutcomes, refusals_by_reason

    # kept as BatchOutcomes: Prefect walks the flow's return value, but not into that
    result.batches = outcomes if isinstance(outcomes, BatchOutcomes) else BatchOutcomes(outcomes)
    for outcome in outcomes:
        delivered = len(acknowledged_ids(outcome))
        failed = len(outcome.customer_ids) - delivered
        result.customers_sent += delivered
        result.customers_failed += failed
        result.customers_rejected += len(outcome.rejected)
        if outcome.method == "POST":
            result.customers_created += delivered
        else:
            result.customers_updated += delivered
    result.rejected_by_reason = refusals_by_reason(outcomes)


def acknowledged_ids(outcome: BatchOutcome) -> tuple[str, ...]:
    """The customers of a batch the partner acknowledged (a failed batch may be partial)."""
    acknowledged: tuple[str, ...] | None = getattr(outcome, "acknowledged", None)
    if acknowledged is not None:  # a DeliveryOutcome knows them one by one
        return acknowledged
    if outcome.status == "acknowledged":
        return outcome.customer_ids
    if outcome.status == "rejected":
        return tuple(c for c in outcome.customer_ids if c not in outcome.rejected)
    return ()


def run_counts(result: SyncResult) -> dict[str, int]:
    """The counts the ledger keeps with a finished run (the report's, in short)."""
    return {
        "customers_read": result.customers_read,
        "customers_held_back": result.customers_held_back,
        "customers_unchanged": result.customers_unchanged,
        "customers_sent": result.customers_sent,
        "customers_failed": result.customers_failed,
        "customers_rejected": result.customers_rejected,
        "orphan_accounts": result.orphan_accounts,
        "orphan_cards": result.orphan_cards,
        "customers_created": result.customers_created,
        "customers_updated": result.customers_updated,
        "customers_absent": result.customers_absent,
        "customers_enrollment_ended": result.customers_enrollment_ended,
        "customers_enrollment_end_failed": result.customers_enrollment_end_failed,
        "batches": len(result.batches),
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = [
    "EXIT_ABORTED",
    "EXIT_FAILED",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "RunOutcome",
    "RunStatus",
    "Stop",
    "acknowledged_ids",
    "apply_outcomes",
    "apply_preparation",
    "decide_outcome",
    "describe_error",
    "run_counts",
    "stop_of",
]
