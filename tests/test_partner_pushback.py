"""AIMD on the partner's 429s, over real HTTP: the stand-in answers 429 whenever more than
a threshold of requests are in flight (devtools/stub_in_flight.py)."""

from __future__ import annotations

from pydantic import SecretStr

from customer_sync.adapters.delivery import RetryPolicy, deliver_batches
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.adapters.request_gate import RequestGate
from customer_sync.devtools.stub_server import StubFaults, StubPartner, run_stub_server
from tests.document_factory import batches, customer_ids

CROWD_LIMIT = 4
TOKEN = "pushback-test"
CONCURRENCY = 16
CUSTOMERS = 150 * 50  # 150 batches
POLICY = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)


async def _deliver(gate: RequestGate | None) -> StubPartner:
    faults = StubFaults(latency=0.02)
    async with run_stub_server(faults, crowd_limit=CROWD_LIMIT, bearer_token=TOKEN) as stub:
        stub.in_flight.retry_after = 0.02
        settings = PartnerSettings(api_url=stub.url, api_token=SecretStr(TOKEN))
        async with PartnerClient(settings) as client:
            outcomes = await deliver_batches(
                client, batches(CUSTOMERS), concurrency=CONCURRENCY, policy=POLICY, gate=gate
            )
    assert all(o.status == "acknowledged" for o in outcomes)
    assert set(stub.accepted) == set(customer_ids(CUSTOMERS))
    assert all(customer.times == 1 for customer in stub.accepted.values())
    return stub


async def test_aimd_converges_below_the_threshold_with_fewer_429s_than_a_fixed_concurrency() -> (
    None
):
    fixed = await _deliver(gate=None)
    gate = RequestGate.for_concurrency(CONCURRENCY)
    paced = await _deliver(gate=gate)

    # the fixed concurrency keeps knocking: every request beyond the threshold is a 429
    assert fixed.in_flight.crowded > 150
    # paced: it came down below the threshold and stayed near it
    assert gate.controller.allowed() <= CROWD_LIMIT + 1
    assert gate.controller.throttled == paced.in_flight.crowded
    assert paced.in_flight.crowded * 3 < fixed.in_flight.crowded, (
        f"paced {paced.in_flight.crowded} 429s vs fixed {fixed.in_flight.crowded}"
    )


async def test_without_pushback_the_gate_stays_at_the_run_concurrency() -> None:
    async with run_stub_server(StubFaults(latency=0.02), bearer_token=TOKEN) as stub:
        settings = PartnerSettings(api_url=stub.url, api_token=SecretStr(TOKEN))
        gate = RequestGate.for_concurrency(8)
        async with PartnerClient(settings) as client:
            await deliver_batches(client, batches(40 * 50), concurrency=8, policy=POLICY, gate=gate)
    assert gate.controller.allowed() == 8
    assert stub.in_flight.most == 8  # the stand-in saw the whole concurrency at once
    assert gate.most_in_flight == 8
