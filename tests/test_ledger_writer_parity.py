"""The group-commit writer (``ledger/_writer.py``) against its reference, the plain path.

The plain path is one transaction per call: ``mark_sending`` then ``record_outcome``. The
delivery's fast path queues the same writes: ``await amark_sending``, ``queue_outcome``,
``aflush``, committed in groups by the writer thread. Given the same sequence of marks and
outcomes (several batches in flight, customers sent again in later batches and runs, whole
and partial rejections, failures, a split's ``DeliveryOutcome``), both must leave the same
ledger: the same batches, acknowledged fingerprints, dead letters and per-customer history,
times and run ids aside. Seeded random sequences, on both backends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from customer_sync.adapters.delivery import DeliveryOutcome
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.interface import Ledger
from customer_sync.schemas.records import Batch, BatchOutcome

SEEDS = range(6)
POOL = tuple(f"C{i:03d}" for i in range(40))


@dataclass(frozen=True)
class _Send:
    batch: Batch
    outcome: BatchOutcome
    fingerprints: dict[str, str]
    documents: dict[str, bytes]


# one step of a sequence: ("start",) | ("mark", send) | ("outcome", send) | ("finish",)
Step = tuple[Any, ...]


def _outcome(rng: random.Random, batch: Batch) -> BatchOutcome:
    ids = batch.customer_ids
    common: dict[str, Any] = {
        "batch_id": batch.batch_id,
        "method": batch.method,
        "customer_ids": ids,
        "request_id": f"req-{batch.batch_id}",
    }
    kind = rng.choice(["acknowledged"] * 4 + ["some-rejected", "rejected", "failed", "split"])
    if kind == "acknowledged":
        return BatchOutcome(status="acknowledged", attempts=1, http_status=200, **common)
    if kind == "some-rejected":
        refused = {c: f"bad field in {c}" for c in rng.sample(ids, k=max(1, len(ids) // 3))}
        return BatchOutcome(
            status="rejected", attempts=2, http_status=400, rejected=refused, **common
        )
    if kind == "rejected":
        return BatchOutcome(
            status="rejected", attempts=1, http_status=400, error="HTTP 400 whole", **common
        )
    if kind == "failed":
        return BatchOutcome(
            status="failed", attempts=4, http_status=503, error="HTTP 503", **common
        )
    acknowledged = tuple(c for c in ids if rng.random() < 0.6)
    rest = [c for c in ids if c not in acknowledged]
    refused = {c: "refused after a split" for c in rest[: len(rest) // 2]}
    return DeliveryOutcome(
        status="failed" if len(rest) > len(refused) else "rejected",
        attempts=3,
        http_status=503,
        error="HTTP 503 after a split",
        rejected=refused,
        acknowledged=acknowledged,
        request_ids=(f"req-{batch.batch_id}-a", f"req-{batch.batch_id}-b"),
        **common,
    )


def _sequence(seed: int) -> list[Step]:
    """Runs of batches, up to 4 in flight: each mark before its outcome, outcomes in any
    order. The same customers come back in later batches with new fingerprints."""
    rng = random.Random(seed)
    steps: list[Step] = []
    for run in range(rng.randint(1, 3)):
        steps.append(("start",))
        in_flight: list[_Send] = []
        for b in range(rng.randint(3, 12)):
            ids = tuple(rng.sample(POOL, k=rng.randint(1, 8)))
            method = rng.choice(["POST", "PUT"])
            documents = {c: orjson.dumps({"sourceCustomerId": c, "v": rng.random()}) for c in ids}
            batch = Batch(f"r{run}-b{b}", method, ids, tuple(documents.values()))
            fingerprints = {c: f"fp-{c}-{rng.randint(0, 3)}" for c in ids}
            send = _Send(batch, _outcome(rng, batch), fingerprints, documents)
            steps.append(("mark", send))
            in_flight.append(send)
            while len(in_flight) >= rng.randint(1, 4):
                steps.append(("outcome", in_flight.pop(rng.randrange(len(in_flight)))))
        rng.shuffle(in_flight)
        steps.extend(("outcome", send) for send in in_flight)
        steps.append(("finish",))
    return steps


def _plain(ledger: Ledger, steps: list[Step]) -> None:
    """The reference: one transaction per call, committed when it returns."""
    run_id = ""
    for step in steps:
        if step[0] == "start":
            run_id = ledger.start_run({"path": "plain"})
        elif step[0] == "mark":
            ledger.mark_sending(run_id, step[1].batch)
        elif step[0] == "outcome":
            s: _Send = step[1]
            ledger.record_outcome(run_id, s.outcome, s.fingerprints, s.documents)
        else:
            ledger.finish_run(run_id, "completed", {})


async def _grouped(ledger: Ledger, steps: list[Step]) -> None:
    """The fast path, as the delivery drives it: marks awaited, outcomes queued."""
    run_id = ""
    for step in steps:
        if step[0] == "start":
            run_id = ledger.start_run({"path": "grouped"})
        elif step[0] == "mark":
            await ledger.amark_sending(run_id, step[1].batch)
        elif step[0] == "outcome":
            s: _Send = step[1]
            ledger.queue_outcome(run_id, s.outcome, s.fingerprints, s.documents)
        else:
            await ledger.aflush()
            ledger.finish_run(run_id, "completed", {})


def _contents(ledger: Any) -> dict[str, Any]:
    """Everything the ledger says, times left out and run ids by their order."""
    runs = list(reversed(ledger.runs()))
    order = {run.run_id: n for n, run in enumerate(runs)}
    batches = [
        (
            order[b.run_id],
            b.batch_id,
            b.method,
            b.customer_ids,
            b.state,
            b.attempts,
            b.http_status,
            b.request_id,
            b.error,
        )
        for run in runs
        for b in ledger.batches_of_run(run.run_id)
    ]
    letters = [
        (
            d.source_customer_id,
            d.fingerprint,
            d.method,
            d.document,
            d.kind,
            d.http_status,
            d.request_id,
            d.answer,
            d.failures,
            order[d.run_id],
            d.batch_id,
        )
        for d in ledger.dead_letters()
    ]
    sends = {
        cid: [
            (order[s.run_id], s.batch_id, s.batch_state, s.acknowledged_fingerprint)
            for s in ledger.customer_sends(cid)
        ]
        for cid in POOL
    }
    return {
        "runs": [(r.status, r.counts) for r in runs],
        "batches": batches,
        "acknowledged": ledger.acknowledged_fingerprints(POOL),
        "known": ledger.known_customer_count(),
        "dead_letters": letters,
        "sends": sends,
        "interrupted": ledger.interrupted_batches(),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def two_states(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two fresh ledgers' places on one backend: one for each path."""
    if request.param == "sqlite":
        yield tmp_path / "plain", tmp_path / "grouped"
        return
    server = request.getfixturevalue("postgres_server")
    urls = (server.database(), server.database())
    yield urls
    for url in urls:
        server.drop(url)


def test_the_group_commit_writer_leaves_the_rows_of_the_plain_path(
    two_states: tuple[Any, Any],
) -> None:
    plain_state, grouped_state = two_states
    with open_ledger(plain_state) as plain, open_ledger(grouped_state) as grouped:
        for seed in SEEDS:
            steps = _sequence(seed)
            _plain(plain, steps)
            asyncio.run(_grouped(grouped, steps))
            expected, got = _contents(plain), _contents(grouped)
            assert got == expected, f"seed {seed}"
        # the sequences reached every kind of row: the comparison is not of empty ledgers
        assert expected["dead_letters"] and expected["acknowledged"]
        assert {b[4] for b in expected["batches"]} == {"acknowledged", "rejected", "failed"}


def test_the_comparison_sees_a_difference(tmp_path: Path) -> None:
    """The check above can fail: one outcome left out of one path is noticed."""
    steps = _sequence(0)
    dropped = next(i for i, step in enumerate(steps) if step[0] == "outcome")
    with open_ledger(tmp_path / "a") as plain, open_ledger(tmp_path / "b") as grouped:
        _plain(plain, steps)
        asyncio.run(_grouped(grouped, steps[:dropped] + steps[dropped + 1 :]))
        assert _contents(plain) != _contents(grouped)
