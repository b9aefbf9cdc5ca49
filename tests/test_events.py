"""The run's events (pure part): names, counts, the guard and the held-back threshold.

The events as a real Prefect server stores them (and the absence of card data in them) are
checked in tests/test_deployment.py, read back from the server's events API.
"""

from __future__ import annotations

import pytest

from customer_sync.flows.events import (
    GUARD_TRIPPED,
    HELD_BACK_ABOVE_THRESHOLD,
    alert_held_back_share,
    run_events,
)
from customer_sync.run.report import SyncResult
from customer_sync.schemas.errors import GuardTripped


def _held_back(read: int, held: int) -> SyncResult:
    result = SyncResult(run_id="20261125T083000Z-abc", customers_read=read)
    result.customers_held_back = held
    result.held_back_by_reason = {"country: not an ISO 3166 code": held}
    result.customers_sent = read - held
    return result


def test_a_green_run_emits_one_event_with_its_counts() -> None:
    [event] = run_events(_held_back(10, 0), kind="sync", alert_share=0.01)
    assert event.event == "customer-sync.run.completed"
    assert event.resource["prefect.resource.id"] == "customer-sync.run.20261125T083000Z-abc"
    assert event.resource["customer-sync.status"] == "completed"
    assert event.payload["delivered"] == 10 and event.payload["exit_status"] == 0


def test_held_back_above_the_threshold_adds_its_own_event() -> None:
    events = run_events(_held_back(100, 3), kind="sync", alert_share=0.01)
    assert [e.event for e in events] == [
        "customer-sync.run.incomplete",
        HELD_BACK_ABOVE_THRESHOLD,
    ]
    assert events[1].payload["held_back"] == 3 and events[1].payload["threshold"] == 0.01
    assert events[0].payload["held_back_by_reason"] == {"country: not an ISO 3166 code": 3}
    assert run_events(_held_back(100, 1), kind="sync", alert_share=0.01)[-1].event != (
        HELD_BACK_ABOVE_THRESHOLD
    )


def test_a_tripped_guard_is_its_own_event() -> None:
    result = _held_back(10, 5)
    result.customers_sent = 0
    message = "5 of 10 customers (50.0%) would be held back, above the limit of 5.0%"
    result.stop(GuardTripped(message))
    events = run_events(result, kind="sync", alert_share=0.5, guard=message)
    assert [e.event for e in events] == ["customer-sync.run.aborted", GUARD_TRIPPED]
    assert events[1].payload["guard"] == message


def test_a_run_never_recorded_emits_nothing() -> None:
    assert run_events(SyncResult(), kind="sync", alert_share=0.01) == []


def test_the_alert_threshold_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE", "0.2")
    assert alert_held_back_share() == 0.2
    monkeypatch.setenv("CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE", "lots")
    assert alert_held_back_share() == 0.01
