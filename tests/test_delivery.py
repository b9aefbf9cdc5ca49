"""Delivery over real HTTP to the stand-in server on 127.0.0.1, with injected faults."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from customer_sync.adapters.auth import PartnerAuthError, SessionTokenAuth
from customer_sync.adapters.delivery import (
    DeliveryOutcome,
    RetryEvent,
    RetryPolicy,
    deliver_batch,
    deliver_batches,
    retryable_status,
)
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_server import StubFaults, StubPartner, run_stub_server
from customer_sync.schemas.records import Batch, BatchOutcome
from tests.document_factory import batches, customer_ids

FAST = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.004, max_retry_after=0.05)


@asynccontextmanager
async def partner(
    faults: StubFaults | None = None, *, api_token: str | None = None, **options: Any
) -> AsyncIterator[tuple[StubPartner, PartnerClient]]:
    async with run_stub_server(faults, **options) as stub:
        token = SecretStr(api_token) if api_token is not None else None
        settings = PartnerSettings(api_url=stub.url, api_token=token)
        async with PartnerClient(settings) as client:
            yield stub, client


def assert_each_delivered_once(stub: StubPartner, ids: list[str]) -> None:
    assert set(stub.accepted) == set(ids)
    assert all(stub.accepted[c].times == 1 for c in ids)
    assert all(r.customers is None or r.customers <= 50 for r in stub.requests)


@pytest.mark.parametrize(
    ("count", "batch_size"), [(0, 50), (1, 50), (50, 50), (51, 50), (120, 50), (120, 7)]
)
async def test_every_customer_exactly_once_and_no_request_over_50(
    count: int, batch_size: int
) -> None:
    async with partner() as (stub, client):
        work = batches(count, batch_size=batch_size)
        outcomes = await deliver_batches(client, work, concurrency=4, policy=FAST)
    assert len(outcomes) == math.ceil(count / batch_size)
    assert [o.batch_id for o in outcomes] == [b.batch_id for b in work]
    assert all(o.status == "acknowledged" and o.attempts == 1 for o in outcomes)
    assert_each_delivered_once(stub, customer_ids(count))
    assert stub.counters.requests == len(work)
    assert [o.request_id for o in outcomes] == [f"{b.batch_id}-1" for b in work]


async def test_documents_arrive_unchanged_with_the_batch_method() -> None:
    # a stand-in that accepts updates of customers it never saw created
    async with partner(puts_need_create=False) as (stub, client):
        (batch,) = batches(3, method="PUT")
        outcome = await deliver_batch(client, batch, FAST)
    assert outcome.http_status == 200
    assert outcome.acknowledged == batch.customer_ids
    for customer_id, document in zip(batch.customer_ids, batch.documents, strict=True):
        assert stub.accepted[customer_id].document == orjson.loads(document)
        assert stub.accepted[customer_id].method == "PUT"


async def test_token_expiry_mid_run_is_renewed_exactly_once() -> None:
    now = [0.0]
    expired: list[str] = []

    def expire_after_first(outcome: BatchOutcome) -> None:
        if not expired:
            now[0] = 10_000.0  # every token issued so far is past its lifetime
            expired.append(outcome.batch_id)

    async with partner(StubFaults(token_lifetime=3600), clock=lambda: now[0]) as (stub, client):
        work = batches(100, batch_size=5)
        outcomes = await deliver_batches(
            client, work, concurrency=6, policy=FAST, on_outcome=expire_after_first
        )
    assert stub.counters.sessions_started == 2
    assert isinstance(client.auth, SessionTokenAuth)
    assert client.auth.generation == 2
    assert stub.counters.unauthorized >= 1
    assert all(o.status == "acknowledged" and o.attempts == 1 for o in outcomes)
    assert_each_delivered_once(stub, customer_ids(100))


async def test_5xx_are_retried_and_attempts_counted() -> None:
    events: list[RetryEvent] = []
    async with partner(StubFaults(fail_each_batch=2, fail_with=503)) as (stub, client):
        outcomes = await deliver_batches(
            client, batches(120), concurrency=3, policy=FAST, on_retry=events.append
        )
    assert [o.attempts for o in outcomes] == [3, 3, 3]
    assert all(o.status == "acknowledged" for o in outcomes)
    assert_each_delivered_once(stub, customer_ids(120))
    assert len(events) == 6
    assert {e.reason for e in events} == {"HTTP 503"}
    assert all(0 <= e.delay <= FAST.max_delay for e in events)
    sent_ids = [r.request_id for r in stub.requests if r.request_id.startswith("run1-000001")]
    assert sorted(sent_ids) == ["run1-000001-1", "run1-000001-2", "run1-000001-3"]


async def test_429_retry_after_is_honoured_and_capped() -> None:
    events: list[RetryEvent] = []
    async with partner(StubFaults(fail_each_batch=1, fail_with=429, retry_after=0.02)) as (
        stub,
        client,
    ):
        await deliver_batches(
            client, batches(100), concurrency=2, policy=FAST, on_retry=events.append
        )
    assert [(e.status, e.retry_after, e.delay) for e in events] == [(429, 0.02, 0.02)] * 2
    assert_each_delivered_once(stub, customer_ids(100))

    events.clear()
    async with partner(StubFaults(fail_each_batch=1, fail_with=429, retry_after=30)) as (
        stub,
        client,
    ):
        outcome = await deliver_batch(client, batches(1)[0], FAST, on_retry=events.append)
    assert [(e.retry_after, e.delay) for e in events] == [(30.0, FAST.max_retry_after)]
    assert outcome.attempts == 2


async def test_random_faults_still_deliver_everything() -> None:
    faults = StubFaults(
        error_share=0.25, rate_limit_share=0.15, drop_share=0.1, retry_after=0, seed=3
    )
    policy = RetryPolicy(max_attempts=30, base_delay=0.001, max_delay=0.002)
    async with partner(faults) as (stub, client):
        outcomes = await deliver_batches(
            client, batches(600, batch_size=10), concurrency=8, policy=policy
        )
    assert all(o.status == "acknowledged" for o in outcomes)
    assert sum(o.attempts for o in outcomes) == stub.counters.requests
    assert stub.counters.requests > 60
    assert_each_delivered_once(stub, customer_ids(600))


async def test_dropped_connections_are_retried() -> None:
    async with partner(StubFaults(fail_each_batch=1, fail_with="drop")) as (stub, client):
        events: list[RetryEvent] = []
        outcomes = await deliver_batches(
            client, batches(120), concurrency=3, policy=FAST, on_retry=events.append
        )
    assert [o.attempts for o in outcomes] == [2, 2, 2]
    assert {e.reason.split(":")[0] for e in events} == {"ServerDisconnectedError"}
    assert stub.counters.dropped == 3
    assert_each_delivered_once(stub, customer_ids(120))


async def test_drop_after_accept_is_resent_and_the_partner_sees_it_twice() -> None:
    async with partner(StubFaults(fail_first_n=1, fail_with="drop", drop_after_accept=True)) as (
        stub,
        client,
    ):
        outcome = await deliver_batch(client, batches(2)[0], FAST)
    assert (outcome.status, outcome.attempts) == ("acknowledged", 2)
    assert stub.accepted["C00000"].times == 2  # the ambiguity a dropped answer leaves


async def test_one_bad_customer_is_isolated_and_the_rest_delivered() -> None:
    bad = "C00057"
    async with partner(StubFaults(reject_ids=frozenset({bad}))) as (stub, client):
        outcomes = await deliver_batches(client, batches(120), concurrency=3, policy=FAST)
    first, second, third = outcomes
    assert (first.status, third.status) == ("acknowledged", "acknowledged")
    assert second.status == "rejected"
    assert list(second.rejected) == [bad]
    assert "configured reject id" in second.rejected[bad]
    assert second.attempts == 2  # the partner named the customer: one split, no bisection
    assert isinstance(second, DeliveryOutcome)
    assert set(second.acknowledged) == set(second.customer_ids) - {bad}
    assert set(second.acknowledged) | second.rejected.keys() == set(second.customer_ids)
    assert second.request_id == "run1-000002-2"
    expected = [c for c in customer_ids(120) if c != bad]
    assert_each_delivered_once(stub, expected)


async def test_invalid_document_is_rejected_with_the_partners_field_errors() -> None:
    work = batches(20, broken={"C00003": {"country": "USA"}, "C00011": {"organizationId": 50004}})
    async with partner() as (stub, client):
        (outcome,) = await deliver_batches(client, work, concurrency=1, policy=FAST)
    assert outcome.status == "rejected"
    assert outcome.http_status == 400
    assert set(outcome.rejected) == {"C00003", "C00011"}
    assert "country" in outcome.rejected["C00003"]
    assert "organizationId: Input should be a valid string" in outcome.rejected["C00011"]
    assert outcome.error == "2 of 20 customers rejected by the partner"
    assert len(stub.accepted) == 18


async def test_rejects_without_customer_names_are_found_by_bisection() -> None:
    faults = StubFaults(reject_ids=frozenset({"C00013", "C00040"}), anonymous_errors=True)
    async with partner(faults) as (stub, client):
        (outcome,) = await deliver_batches(client, batches(50), concurrency=1, policy=FAST)
    assert outcome.status == "rejected"
    assert set(outcome.rejected) == {"C00013", "C00040"}
    assert all(r.customers is not None and r.customers <= 50 for r in stub.requests)
    assert outcome.attempts == stub.counters.requests < 25
    assert len(stub.accepted) == 48
    assert all(v.times == 1 for v in stub.accepted.values())


async def test_403_is_not_retried() -> None:
    events: list[RetryEvent] = []
    async with partner(StubFaults(fail_first_n=1, fail_with=403)) as (stub, client):
        outcome = await deliver_batch(client, batches(5)[0], FAST, on_retry=events.append)
    assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 1, 403)
    assert outcome.error is not None
    assert "403" in outcome.error
    assert events == []
    assert stub.accepted == {}


async def test_max_attempts_exhausted_fails_the_batch() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
    async with partner(StubFaults(fail_each_batch=99, fail_with=500)) as (stub, client):
        outcome = await deliver_batch(client, batches(5)[0], policy)
    assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 3, 500)
    assert outcome.error == "gave up after 3 attempts: HTTP 500"
    assert isinstance(outcome, DeliveryOutcome)
    assert not outcome.acknowledged and not outcome.rejected  # every customer failed
    assert stub.counters.requests == 3


async def test_nothing_listening_fails_after_retries() -> None:
    async with run_stub_server() as stub:
        url = stub.url
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
    auth = SessionTokenAuth(url)
    async with PartnerClient(PartnerSettings(api_url=url, api_token=None), auth=auth) as client:
        # the session cannot start either: a transient auth failure, retried like the rest
        outcome = await deliver_batch(client, batches(1)[0], policy)
    assert (outcome.status, outcome.attempts) == ("failed", 2)
    assert outcome.error is not None
    assert "startSession failed" in outcome.error


async def test_timeouts_are_retried_then_fail() -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
    async with run_stub_server(StubFaults(latency=0.2)) as stub:
        settings = PartnerSettings(api_url=stub.url, api_token=None, request_timeout=0.02)
        async with PartnerClient(settings) as client:
            outcome = await deliver_batch(client, batches(2)[0], policy, on_retry=events.append)
    assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 2, None)
    assert [e.reason.split(":")[0] for e in events] == ["TimeoutError"]


async def test_static_bearer_token_scheme() -> None:
    async with partner(api_token="tok-123", bearer_token="tok-123") as (stub, client):
        outcomes = await deliver_batches(client, batches(60), concurrency=2, policy=FAST)
    assert all(o.status == "acknowledged" for o in outcomes)
    assert stub.counters.sessions_started == 0


async def test_refused_credentials_abort_delivery() -> None:
    async with partner(api_token="wrong", bearer_token="right") as (_, client):
        with pytest.raises(PartnerAuthError, match="401"):
            await deliver_batches(client, batches(60), concurrency=2, policy=FAST)


async def test_async_iterable_input_is_pulled_lazily_with_bounded_concurrency() -> None:
    pulled = Counter[str]()
    in_flight_peak = [0]
    done = [0]

    async def source() -> AsyncIterator[Batch]:
        for batch in batches(400, batch_size=10):
            pulled["n"] += 1
            in_flight_peak[0] = max(in_flight_peak[0], pulled["n"] - done[0])
            yield batch

    def finished(outcome: BatchOutcome) -> None:
        done[0] += 1

    async with partner() as (stub, client):
        outcomes = await deliver_batches(
            client, source(), concurrency=3, policy=FAST, on_outcome=finished
        )
    assert [o.batch_id for o in outcomes] == [f"run1-{n:06d}" for n in range(1, 41)]
    assert in_flight_peak[0] <= 3
    assert_each_delivered_once(stub, customer_ids(400))


async def test_keep_outcomes_false_returns_nothing_but_reports_each() -> None:
    seen: list[str] = []
    async with partner() as (_, client):
        result = await deliver_batches(
            client, iter(batches(100)), concurrency=2, policy=FAST,
            on_outcome=lambda o: seen.append(o.batch_id), keep_outcomes=False,
        )  # fmt: skip
    assert result == []
    assert sorted(seen) == ["run1-000001", "run1-000002"]


def test_concurrency_must_be_positive() -> None:
    import asyncio

    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(deliver_batches(None, [], concurrency=0, policy=FAST))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (408, True),
        (429, True),
        (500, True),
        (503, True),
        (504, True),
        (501, False),
        (400, False),
        (403, False),
    ],
)
def test_retryable_statuses(status: int, expected: bool) -> None:
    assert retryable_status(status) is expected


def _sequence(values: list[float]) -> Iterator[float]:
    yield from values


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    draws = _sequence([0.5, 0.25])
    jittered = RetryPolicy(base_delay=1.0, max_delay=5.0, random=lambda: next(draws))
    assert [jittered.delay(3), jittered.delay(3)] == [2.0, 1.0]
    assert policy.delay(1, retry_after=7.5) == 7.5
    assert RetryPolicy(max_retry_after=3).delay(1, retry_after=60) == 3
    assert policy.delay(10_000) == 5.0
