"""Prefect events a run emits, for automations and the event feed.

Three events, all about the resource ``customer-sync.run.<run id>`` (Prefect adds the flow
run, flow, deployment and tags as related resources):

``customer-sync.run.<status>``
    once per run that was recorded (``completed``, ``incomplete``, ``aborted``, ``failed``,
    ``interrupted``), payload: the counts (read, delivered, unchanged, held back and held
    back by reason, rejected, still failing, orphan rows), the held-back share, the
    outcome's reason.
``customer-sync.guard.tripped``
    when a guard stopped the run; payload: its one-line message (counts and limits).
``customer-sync.run.held-back-above-threshold``
    when the share of customers held back is above ``CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE``
    (default 0.01) of those read, whether or not the guard stopped the run. Automations
    match event names and labels, not numbers, so the threshold is applied here.

Counts, reason names and our own one-line messages only: no customer id, no card data, no
postal code, no path of a file that holds them beyond the run's own folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from customer_sync.run.report import SyncResult
from customer_sync.settings import ALERT_HELD_BACK_SHARE_ENV, Settings

log = logging.getLogger(__name__)

RUN_EVENT_PREFIX: Final = "customer-sync.run"
GUARD_TRIPPED: Final = "customer-sync.guard.tripped"
HELD_BACK_ABOVE_THRESHOLD: Final = "customer-sync.run.held-back-above-threshold"
ALERT_SHARE_VARIABLE: Final = ALERT_HELD_BACK_SHARE_ENV
DEFAULT_ALERT_HELD_BACK_SHARE: Final = 0.01

FlowKind = Literal["sync", "replay"]


@dataclass(frozen=True)
class RunEvent:
    """An event to emit: its name, the run it is about, and its payload."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any] = field(default_factory=dict)


def alert_held_back_share() -> float:
    """The held-back share above which ``held-back-above-threshold`` is emitted."""
    text = Settings.from_environment().alert_held_back_share or ""
    try:
        return float(text) if text.strip() else DEFAULT_ALERT_HELD_BACK_SHARE
    except ValueError:
        log.warning(
            "%s is not a number; using %s", ALERT_SHARE_VARIABLE, DEFAULT_ALERT_HELD_BACK_SHARE
        )
        return DEFAULT_ALERT_HELD_BACK_SHARE


def held_back_share(result: SyncResult) -> float:
    return result.customers_held_back / result.customers_read if result.customers_read else 0.0


def run_resource(run_id: str, kind: FlowKind, status: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"{RUN_EVENT_PREFIX}.{run_id}",
        "prefect.resource.name": run_id,
        "customer-sync.kind": kind,
        "customer-sync.status": status,
    }


def run_counts(result: SyncResult) -> dict[str, Any]:
    """The numbers of a run, as the event payload carries them."""
    return {
        "read": result.customers_read,
        "delivered": result.customers_sent,
        "created": result.customers_created,
        "updated": result.customers_updated,
        "unchanged": result.customers_unchanged,
        "planned": result.customers_planned,
        "held_back": result.customers_held_back,
        "held_back_by_reason": dict(result.held_back_by_reason),
        "held_back_share": round(held_back_share(result), 6),
        "rejected": result.customers_rejected,
        "failed": result.customers_failed - result.customers_rejected,
        "orphan_rows": result.orphan_accounts + result.orphan_cards,
        "absent": result.customers_absent,
    }


def run_events(
    result: SyncResult, *, kind: FlowKind, alert_share: float, guard: str | None = None
) -> list[RunEvent]:
    """The events for a recorded run (pure). ``guard``: the message of the guard that
    stopped it, if one did."""
    if result.run_id is None:
        return []
    outcome = result.outcome
    resource = run_resource(result.run_id, kind, outcome.status)
    counts = run_counts(result)
    events = [
        RunEvent(
            f"{RUN_EVENT_PREFIX}.{outcome.status}",
            resource,
            {
                **counts,
                "status": outcome.status,
                "exit_status": outcome.exit_status,
                "reason": outcome.reason,
                "dry_run": result.dry_run,
            },
        )
    ]
    if guard is not None:
        events.append(RunEvent(GUARD_TRIPPED, resource, {"guard": guard, **counts}))
    if counts["held_back_share"] > alert_share:
        events.append(
            RunEvent(
                HELD_BACK_ABOVE_THRESHOLD,
                resource,
                {"threshold": alert_share, **counts},
            )
        )
    return events


def emit_run_events(result: SyncResult, *, kind: FlowKind, guard: str | None = None) -> None:
    """Emit the run's events from inside its flow run (elsewhere, or when Prefect emits
    none, a no-op): never fails the run, whose ledger and report already tell its story."""
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    if FlowRunContext.get() is None:  # a plain function call: no run to tell Prefect about
        return
    try:
        for event in run_events(
            result, kind=kind, alert_share=alert_held_back_share(), guard=guard
        ):
            emit_event(event.event, resource=event.resource, payload=event.payload)
    except Exception as error:  # the events are a copy for automations
        log.warning("Could not emit the run's events: %s", type(error).__name__)


__all__ = [
    "GUARD_TRIPPED",
    "HELD_BACK_ABOVE_THRESHOLD",
    "RUN_EVENT_PREFIX",
    "RunEvent",
    "alert_held_back_share",
    "emit_run_events",
    "run_counts",
    "run_events",
]
