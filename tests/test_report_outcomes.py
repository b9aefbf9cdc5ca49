"""SyncResult.batches: a sequence of outcomes that Prefect does not walk into."""

from __future__ import annotations

import pickle

import orjson
from prefect.utilities.collections import visit_collection

from customer_sync.adapters.delivery import DeliveryOutcome
from customer_sync.run.report import BatchOutcomes, SyncResult
from customer_sync.schemas.records import BatchOutcome


def _outcomes(count: int) -> list[BatchOutcome]:
    made: list[BatchOutcome] = []
    for number in range(count):
        ids = tuple(f"C{number:04d}-{i:02d}" for i in range(50))
        made.append(
            DeliveryOutcome(
                batch_id=f"run-{number:06d}",
                method="POST" if number % 2 else "PUT",
                customer_ids=ids,
                status="acknowledged",
                attempts=1,
                http_status=200,
                request_id=f"req-{number}",
                acknowledged=ids,
                request_ids=(f"req-{number}",),
            )
        )
    return made


def _visited(value: object) -> int:
    seen: list[object] = []
    visit_collection(value, visit_fn=seen.append, return_data=False)
    return len(seen)


def test_prefect_does_not_walk_into_the_outcomes() -> None:
    # the flow engine walks its return value; 20k outcomes of 50 ids took seconds
    few = SyncResult(batches=BatchOutcomes(_outcomes(2)))
    many = SyncResult(batches=BatchOutcomes(_outcomes(300)))
    assert _visited(many) == _visited(few)
    assert _visited(BatchOutcomes(_outcomes(300))) == 1


def test_outcomes_read_like_a_list() -> None:
    made = _outcomes(5)
    outcomes = BatchOutcomes(made[:3])
    outcomes.extend(made[3:])
    assert len(outcomes) == 5
    assert outcomes == made
    assert outcomes[0] is made[0]
    assert outcomes[-2:] == made[-2:]
    assert [o.batch_id for o in outcomes] == [o.batch_id for o in made]
    assert pickle.loads(pickle.dumps(outcomes)) == outcomes
    assert "5 outcomes" in repr(outcomes)


def test_a_list_given_by_hand_becomes_outcomes_and_the_report_is_unchanged() -> None:
    made = _outcomes(3)
    result = SyncResult(batches=made)  # type: ignore[arg-type]
    assert isinstance(result.batches, BatchOutcomes)
    report = orjson.loads(result.to_json())
    assert [entry["batch_id"] for entry in report["batches"]] == [o.batch_id for o in made]
    assert report["batches"][0] == {
        "batch_id": "run-000000",
        "method": "PUT",
        "requestId": "req-0",
        "status": "acknowledged",
        "http_status": 200,
        "attempts": 1,
        "customers": list(made[0].customer_ids),
        "error": None,
        "rejected": {},
    }
