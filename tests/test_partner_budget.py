"""One partner budget across shards: a Prefect global concurrency limit on a real server.

Two shards of one extract run at once (two threads, each its own flow run) against the
stand-in partner, which counts the data requests it has in flight. With the limit
``partner-requests`` of N on the server, it never sees more than N at once, whatever each
shard's ``concurrency``; without the limit each run keeps its own ``--concurrency``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.flows.partner_budget import PARTNER_REQUESTS_LIMIT, partner_limit
from customer_sync.run.report import SyncResult
from tests.flow_support import run_sync, write_synthetic

pytestmark = pytest.mark.usefixtures("prefect_harness")

BUDGET = 3
CONCURRENCY = 8
CUSTOMERS = 1_200


@pytest.fixture
def budget() -> Iterator[int]:
    """The server's global concurrency limit ``partner-requests`` (``prefect gcl create``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    async def create() -> None:
        async with get_client() as client:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=PARTNER_REQUESTS_LIMIT, limit=BUDGET)
            )

    async def delete() -> None:
        async with get_client() as client:
            await client.delete_global_concurrency_limit_by_name(PARTNER_REQUESTS_LIMIT)

    asyncio.run(create())
    try:
        yield BUDGET
    finally:
        asyncio.run(delete())


def _two_shards(source: Path, url: str, state: Path) -> list[SyncResult]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [
            pool.submit(
                run_sync, source, url, state, shard=f"{n}/2", chunk_customers=100,
                concurrency=CONCURRENCY,
            )
            for n in (1, 2)
        ]  # fmt: skip
        return [run.result() for run in runs]


def _check_delivered_once(results: list[SyncResult], stub: object, source_ids: int) -> None:
    assert sum(r.customers_sent for r in results) == source_ids
    assert all(r.customers_sent > 0 for r in results)
    accepted = stub.accepted  # type: ignore[attr-defined]
    assert len(accepted) == source_ids
    assert all(customer.times == 1 for customer in accepted.values())


def test_two_shards_stay_within_one_budget(budget: int, tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    assert asyncio.run(partner_limit()) == budget
    with serve_stub_in_thread(StubFaults(latency=0.03)) as stub:
        results = _two_shards(source, stub.url, tmp_path / "state")
    _check_delivered_once(results, stub, CUSTOMERS)
    assert stub.in_flight.most <= budget, f"the partner saw {stub.in_flight.most} at once"


def test_without_a_budget_each_shard_keeps_its_own_concurrency(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    assert asyncio.run(partner_limit()) is None
    with serve_stub_in_thread(StubFaults(latency=0.03)) as stub:
        results = _two_shards(source, stub.url, tmp_path / "state")
    _check_delivered_once(results, stub, CUSTOMERS)
    # the control: the same runs without the limit go above it (so the test above can fail)
    assert stub.in_flight.most > BUDGET
