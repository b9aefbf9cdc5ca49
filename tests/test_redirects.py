"""Redirects: at most one, same origin only; nothing (no body, no token) goes elsewhere.

Real HTTP on 127.0.0.1: the stand-in partner redirects, and a second server on another port
records every request that reaches it. It must receive nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from pydantic import SecretStr

from customer_sync.adapters.auth import PartnerAuthError
from customer_sync.adapters.delivery import RetryPolicy, deliver_batch
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_records import MOVED_PREFIX
from customer_sync.devtools.stub_server import StubFaults, StubPartner, run_stub_server
from customer_sync.schemas import contract
from tests.document_factory import batches

FAST = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)


@dataclass
class Recorder:
    """Another host: records every request it receives (and answers 200 to all)."""

    url: str = ""
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    seen = Recorder()

    async def record(request: web.Request) -> web.Response:
        seen.received.append(
            (request.method, request.path_qs, dict(request.headers), await request.read())
        )
        return web.json_response({"requestId": "elsewhere", "sessionToken": "x"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    seen.url = f"http://127.0.0.1:{port}"
    try:
        yield seen
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client_for(
    stub: StubPartner, *, token: str | None = None
) -> AsyncIterator[PartnerClient]:
    settings = PartnerSettings(
        api_url=stub.url, api_token=SecretStr(token) if token is not None else None
    )
    async with PartnerClient(settings) as client:
        yield client


@pytest.mark.parametrize("status", [307, 308, 301, 302])
async def test_redirect_to_another_port_sends_nothing_there(status: int) -> None:
    async with recorder() as other:
        target = f"{other.url}/v2/data/customers?key=secret-query"
        faults = StubFaults(redirect_to=target, redirect_status=status)
        async with run_stub_server(faults) as stub, client_for(stub) as client:
            (batch,) = batches(3)
            outcome = await deliver_batch(client, batch, FAST)
    assert other.received == []
    assert outcome.status == "failed"
    assert outcome.attempts == 1  # terminal: not retried, not split
    assert outcome.acknowledged == ()
    port = other.url.rsplit(":", 1)[1]
    assert outcome.error is not None
    assert f"127.0.0.1:{port}" in outcome.error
    assert "secret-query" not in outcome.error
    assert not stub.accepted


async def test_redirect_to_another_scheme_is_refused() -> None:
    async with recorder() as other:
        target = other.url.replace("http://", "https://") + "/v2/data/customers"
        async with (
            run_stub_server(StubFaults(redirect_to=target)) as stub,
            client_for(stub) as client,
        ):
            outcome = await deliver_batch(client, batches(2)[0], FAST)
    assert other.received == []
    assert outcome.status == "failed"
    assert outcome.error is not None and "another origin" in outcome.error


async def test_one_same_origin_redirect_is_followed_with_body_and_token() -> None:
    async with run_stub_server() as stub:
        # the stub redirects to its own moved alias, which serves the request
        faults = StubFaults(redirect_to=stub.url + MOVED_PREFIX + contract.CUSTOMERS_PATH)
        stub.faults = faults
        async with client_for(stub) as client:
            # a POST: the stand-in refuses PUTs of customers it never created
            (batch,) = batches(4, method="POST")
            outcome = await deliver_batch(client, batch, FAST)
    assert outcome.status == "acknowledged"
    assert outcome.acknowledged == batch.customer_ids
    assert {c.method for c in stub.accepted.values()} == {"POST"}
    assert [r.status for r in stub.requests] == [307, 200]
    assert stub.counters.unauthorized == 0  # the token went along to the same origin


async def test_a_relative_same_origin_redirect_is_followed() -> None:
    faults = StubFaults(redirect_to=MOVED_PREFIX + contract.CUSTOMERS_PATH, redirect_status=308)
    async with run_stub_server(faults) as stub, client_for(stub) as client:
        outcome = await deliver_batch(client, batches(2)[0], FAST)
    assert outcome.status == "acknowledged"


async def test_a_second_same_origin_redirect_fails_the_batch() -> None:
    async with run_stub_server() as stub:
        stub.faults = StubFaults(redirect_to=stub.url + contract.CUSTOMERS_PATH)  # loops
        async with client_for(stub) as client:
            outcome = await deliver_batch(client, batches(3)[0], FAST)
    assert outcome.status == "failed"
    assert outcome.attempts == 1
    assert outcome.error is not None and "second redirect" in outcome.error
    assert [r.status for r in stub.requests] == [307, 307]
    assert not stub.accepted


async def test_redirect_of_start_session_sends_nothing_and_fails_the_run() -> None:
    async with recorder() as other:
        faults = StubFaults(redirect_session_to=other.url + contract.START_SESSION_PATH)
        async with run_stub_server(faults) as stub, client_for(stub) as client:
            with pytest.raises(PartnerAuthError) as failure:
                await deliver_batch(client, batches(2)[0], FAST)
    assert other.received == []
    assert failure.value.transient is False
    assert other.url.removeprefix("http://") in str(failure.value)
    assert stub.counters.requests == 0  # no data request went anywhere without a session


@pytest.mark.parametrize(
    ("location", "problem"),
    [(None, "no Location"), ("http://[::1", "unreadable Location"), ("mailto:x@y", "unreadable")],
)
async def test_missing_or_garbled_location_fails_the_batch(
    location: str | None, problem: str
) -> None:
    async def moved(request: web.Request) -> web.Response:
        await request.read()
        headers = {"Location": location} if location is not None else {}
        return web.Response(status=307, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        settings = PartnerSettings(api_url=f"http://127.0.0.1:{port}", api_token=SecretStr("t0k"))
        async with PartnerClient(settings) as client:
            outcome = await deliver_batch(client, batches(2)[0], FAST)
    finally:
        await runner.cleanup()
    assert outcome.status == "failed"
    assert outcome.attempts == 1
    assert outcome.error is not None and problem in outcome.error
