"""The partner's edges over real HTTP: 200s carrying errors, expiry as 500, JWT expiry,
Content-Type on every request, and the stand-in checking the token first."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from customer_sync.adapters.auth import PartnerAuthError, SessionTokenAuth, session_expiry
from customer_sync.adapters.delivery import RetryPolicy, deliver_batch, deliver_batches
from customer_sync.adapters.http_exchange import retryable_status
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_server import StubFaults, StubPartner, run_stub_server
from customer_sync.schemas import contract
from tests.document_factory import batches, customer_ids

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)


@asynccontextmanager
async def partner(
    faults: StubFaults | None = None, **options: Any
) -> AsyncIterator[tuple[StubPartner, PartnerClient]]:
    async with run_stub_server(faults, **options) as stub:
        settings = PartnerSettings(api_url=stub.url, api_token=None)
        async with PartnerClient(settings) as client:
            yield stub, client


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


# --- a 200 is not always a success ---------------------------------------------------------
async def test_a_200_naming_customers_rejects_them_and_acknowledges_the_rest() -> None:
    ids = customer_ids(10)
    named = {ids[2], ids[7]}
    async with partner(StubFaults(ok_with_errors_ids=frozenset(named))) as (stub, client):
        (batch,) = batches(10)
        outcome = await deliver_batch(client, batch, FAST)
    assert outcome.status == "rejected"
    assert set(outcome.rejected) == named
    assert set(outcome.acknowledged) == set(ids) - named
    assert set(stub.accepted) == set(ids) - named
    assert outcome.attempts == 1  # one request: the others were taken by it
    assert all("configured 200-with-errors id" in text for text in outcome.rejected.values())


async def test_a_200_with_errors_naming_nobody_acknowledges_nobody_and_splits() -> None:
    ids = customer_ids(8)
    faults = StubFaults(ok_with_errors_ids=frozenset({ids[5]}), anonymous_errors=True)
    async with partner(faults) as (stub, client):
        (batch,) = batches(8)
        outcome = await deliver_batch(client, batch, FAST)
    assert set(outcome.rejected) == {ids[5]}
    assert set(outcome.acknowledged) == set(ids) - {ids[5]}
    assert set(stub.accepted) == set(ids) - {ids[5]}
    assert all(stub.accepted[c].times == 1 for c in stub.accepted)
    assert outcome.attempts > 1  # isolated by splitting


# --- expired sessions ----------------------------------------------------------------------
async def test_expiry_answered_as_500_renews_once_and_delivers() -> None:
    now = [0.0]
    expired: list[str] = []

    def expire_after_first(_: object) -> None:
        if not expired:
            now[0] = 10_000.0
            expired.append("yes")

    faults = StubFaults(expiry_as_500=True)
    async with partner(faults, clock=lambda: now[0]) as (stub, client):
        outcomes = await deliver_batches(
            client, batches(60, batch_size=5), concurrency=4, policy=FAST,
            on_outcome=expire_after_first,
        )  # fmt: skip
    assert stub.counters.unauthorized >= 1
    assert stub.counters.sessions_started == 2
    assert all(o.status == "acknowledged" and o.attempts == 1 for o in outcomes)
    assert len(stub.accepted) == 60


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (1_767_225_600, 1_767_225_600.0),
        (1_767_225_600_000, 1_767_225_600.0),
        ("1767225600", 1_767_225_600.0),
        ("2026-01-01T00:00:00Z", 1_767_225_600.0),
        ("2026-01-01T00:00:00", 1_767_225_600.0),
        ("soon", None),
        (True, None),
    ],
)
def test_session_expiry_claim(claim: object, expected: float | None) -> None:
    assert session_expiry(_jwt({"sessionExpirationTimestamp": claim})) == expected


def test_session_expiry_absent_or_no_jwt() -> None:
    assert session_expiry(_jwt({"sub": "x"})) is None
    assert session_expiry("opaque-token") is None
    assert session_expiry("a.!!!.c") is None


async def test_jwt_token_is_renewed_shortly_before_its_claim_without_a_refusal() -> None:
    wall = [time.time()]
    faults = StubFaults(jwt_tokens=True, token_lifetime=1000)
    async with run_stub_server(faults) as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url, refresh_after=None, wall_clock=lambda: wall[0])
        first = dict(await auth.headers(session))
        wall[0] += 850  # 150 s left: the margin (a tenth of 1000 s) is not reached yet
        assert await auth.headers(session) == first
        wall[0] += 60  # 90 s left
        assert await auth.headers(session) != first
    assert stub.counters.sessions_started == 2
    assert stub.counters.unauthorized == 0


# --- Content-Type, and the order of the stand-in's checks ---------------------------------
async def test_content_type_is_sent_on_retries_splits_and_renewals() -> None:
    now = [0.0]

    def expire(_: object) -> None:
        now[0] += 10_000.0

    ids = customer_ids(40)
    faults = StubFaults(fail_each_batch=1, reject_ids=frozenset({ids[3]}), expiry_as_500=True)
    async with partner(faults, clock=lambda: now[0]) as (stub, client):
        outcomes = await deliver_batches(
            client, batches(40, batch_size=10), concurrency=2, policy=FAST, on_outcome=expire
        )
    assert stub.counters.unsupported_media == 0
    assert stub.counters.injected_errors >= 4 and stub.counters.rejected >= 1
    assert stub.counters.sessions_started >= 2
    assert sum(len(o.rejected) for o in outcomes) == 1
    assert len(stub.accepted) == 39


async def test_the_stand_in_refuses_a_request_without_json_content_type() -> None:
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url)
        headers = dict(await auth.headers(session))
        body = batches(1)[0].body
        async with session.post(
            stub.url + contract.CUSTOMERS_PATH, data=body, headers=headers
        ) as a:
            assert a.status == 415
        async with session.post(stub.url + contract.START_SESSION_PATH, data=b"{}") as a:
            assert a.status == 415


async def test_the_stand_in_checks_the_token_before_injected_faults() -> None:
    async with run_stub_server(StubFaults(fail_first_n=5)) as stub, aiohttp.ClientSession() as s:
        body = batches(1)[0].body
        headers = {"Content-Type": "application/json", contract.SESSION_TOKEN_HEADER: "bogus"}
        async with s.post(stub.url + contract.CUSTOMERS_PATH, data=body, headers=headers) as a:
            assert a.status == 401
    assert stub.counters.injected_errors == 0


async def test_start_session_refusal_does_not_heal() -> None:
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url + "/missing")
        with pytest.raises(PartnerAuthError) as failure:
            await auth.headers(session)
    assert failure.value.transient is retryable_status(404) is False


def test_one_healing_rule() -> None:
    from customer_sync.adapters import auth, delivery, http_exchange

    assert delivery.retryable_status is auth.retryable_status is retryable_status
    assert delivery.transient_error is auth.transient_error is http_exchange.transient_error


def test_edge_faults_survive_the_one_stub_declaration() -> None:
    """``fault_arguments`` (what ``serve_stub_in_subprocess`` passes) read back by the one
    declaration of the stand-in's options, as ``stub-api`` and ``demo`` both take them."""
    from dataclasses import replace

    import typer

    from customer_sync.cli.app import app
    from customer_sync.cli.stand_in import stand_in_faults
    from customer_sync.devtools.stub_server import fault_arguments

    faults = StubFaults(
        redirect_to="http://127.0.0.1:9/x",
        redirect_status=308,
        redirect_session_to="http://127.0.0.1:9/s",
        echo_errors=True,
        ok_with_errors_ids=frozenset({"A", "B"}),
        anonymous_errors=True,
        expiry_as_500=True,
        jwt_tokens=True,
        seed=None,
    )
    flags = fault_arguments(faults)
    group = typer.main.get_command(app)
    for name in ("stub-api", "demo"):
        parent = group.make_context("customer-sync", [name])
        command = group.get_command(parent, name)  # type: ignore[attr-defined]
        parsed = command.make_context(name, list(flags), parent=parent)  # it takes the list
        from_cli = stand_in_faults(parsed.params)
        assert from_cli == faults, name
    assert replace(from_cli, jwt_tokens=False) != faults  # the comparison can fail
