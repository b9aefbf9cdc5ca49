"""Auth schemes, client settings and TLS, against the stand-in server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from customer_sync.adapters.auth import PartnerAuthError, SessionTokenAuth, StaticBearerAuth
from customer_sync.adapters.delivery import RetryPolicy, deliver_batches
from customer_sync.adapters.partner_client import (
    PartnerClient,
    PartnerSettings,
    customers_url,
    is_loopback,
    retry_after_seconds,
    ssl_context,
)
from customer_sync.devtools.stub_server import run_stub_server
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError
from tests.document_factory import batches

FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


async def test_concurrent_first_use_starts_one_session() -> None:
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url)
        headers = await asyncio.gather(*(auth.headers(session) for _ in range(20)))
    assert stub.counters.sessions_started == 1
    assert auth.generation == 1
    assert len({h[contract.SESSION_TOKEN_HEADER] for h in headers}) == 1


async def test_many_401s_on_one_token_renew_once() -> None:
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url)
        stale = dict(await auth.headers(session))
        fresh = await asyncio.gather(*(auth.renew(session, stale) for _ in range(20)))
        assert stub.counters.sessions_started == 2
        assert {f[contract.SESSION_TOKEN_HEADER] for f in fresh if f} != {
            stale[contract.SESSION_TOKEN_HEADER]
        }
        # a late 401 for the old token does not start a third session
        await auth.renew(session, stale)
        assert stub.counters.sessions_started == 2
        assert auth.generation == 2


async def test_token_is_refreshed_before_it_expires() -> None:
    now = [0.0]
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url, refresh_after=100, clock=lambda: now[0])
        first = dict(await auth.headers(session))
        assert await auth.headers(session) == first
        now[0] = 100.0
        assert await auth.headers(session) != first
        assert stub.counters.sessions_started == 2


async def test_refused_session_is_not_asked_again() -> None:
    async with run_stub_server() as stub, aiohttp.ClientSession() as session:
        auth = SessionTokenAuth(stub.url + "/wrong-prefix")
        with pytest.raises(PartnerAuthError, match="HTTP 404") as first:
            await auth.headers(session)
        assert first.value.transient is False
        with pytest.raises(PartnerAuthError) as second:
            await auth.headers(session)
        assert second.value is first.value


async def test_tokens_never_reach_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now = [0.0]

    def expire(_: object) -> None:
        now[0] += 10_000

    async with (
        run_stub_server(clock=lambda: now[0]) as stub,
        PartnerClient(PartnerSettings(api_url=stub.url, api_token=None)) as client,
    ):
        await deliver_batches(
            client, batches(30, batch_size=5), concurrency=2, policy=FAST, on_outcome=expire
        )
        auth = client.auth
        assert isinstance(auth, SessionTokenAuth)
        token = (await auth.headers(client.session))[contract.SESSION_TOKEN_HEADER]
        assert token not in repr(auth)
        assert token not in repr(client)
    assert auth.generation > 1
    assert "session token refused (expired)" in caplog.text
    assert token not in caplog.text
    assert "0042" not in caplog.text  # last4 of the factory's cards


def test_static_bearer_hides_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SYNC_API_TOKEN", "very-secret")
    auth = StaticBearerAuth("very-secret")
    assert "very-secret" not in repr(auth)
    settings = PartnerSettings(api_url="https://partner.example")
    assert settings.api_token is not None
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings.model_dump())


def test_static_bearer_needs_a_token() -> None:
    with pytest.raises(ConfigError, match="empty"):
        StaticBearerAuth("  ")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SYNC_API_URL", "https://pub-api-us.sandbox.cardlytics.com")
    monkeypatch.setenv("CUSTOMER_SYNC_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("CUSTOMER_SYNC_API_TOKEN", "")
    settings = PartnerSettings()
    assert settings.api_url == "https://pub-api-us.sandbox.cardlytics.com"
    assert settings.request_timeout == 12.5
    assert settings.api_token is None  # empty means absent: session-token auth
    assert isinstance(PartnerClient(settings).auth, SessionTokenAuth)


def test_from_environment_lets_explicit_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SYNC_API_URL", "https://from-env.example")
    assert PartnerSettings.from_environment(api_url=None).api_url == "https://from-env.example"
    chosen = PartnerSettings.from_environment(api_url="http://127.0.0.1:9")
    assert chosen.api_url == "http://127.0.0.1:9"
    monkeypatch.setenv("CUSTOMER_SYNC_MAX_CONNECTIONS", "many")
    with pytest.raises(ConfigError, match="CUSTOMER_SYNC_MAX_CONNECTIONS: Input should be"):
        PartnerSettings.from_environment()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (None, "no partner URL"),
        ("http://partner.example", "plain http is only allowed to loopback"),
        ("http://10.1.2.3:8080", "plain http is only allowed to loopback"),
        ("ftp://127.0.0.1", "http"),
        ("https://user:pw@partner.example", "credentials"),
    ],
)
def test_partner_url_rules(url: str | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        customers_url(url)


@pytest.mark.parametrize(
    "url",
    ["https://partner.example", "http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:9"],
)
def test_allowed_partner_urls(url: str) -> None:
    assert str(customers_url(url)).endswith("/v2/data/customers")


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.5.0.1")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("partner.example")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), ("3", 3.0), ("0.25", 0.25), ("-4", 0.0), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)  # fmt: skip
def test_retry_after_parsing(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_certificate_and_key_come_in_pairs(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="both"):
        ssl_context(PartnerSettings(api_url="https://p.example", client_cert=cert))
    with pytest.raises(ConfigError, match="no such file"):
        ssl_context(
            PartnerSettings(
                api_url="https://p.example", client_cert=cert, client_key=tmp_path / "nope.pem"
            )
        )
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="cannot load the client certificate"):
        ssl_context(
            PartnerSettings(
                api_url="https://p.example", client_cert=cert, client_key=tmp_path / "key.pem"
            )
        )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        extra = ["-extfile", "server.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *extra,
                 cwd=folder)  # fmt: skip


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_mutual_tls_end_to_end(tmp_path: Path) -> None:
    _certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_context.verify_mode = ssl.CERT_REQUIRED
    async with run_stub_server(ssl_context=server_context) as stub:
        assert stub.url.startswith("https://127.0.0.1:")
        good = PartnerSettings(
            api_url=stub.url,
            api_token=None,
            client_cert=tmp_path / "client.pem",
            client_key=tmp_path / "client.key",
            ca_bundle=tmp_path / "ca.pem",
        )
        async with PartnerClient(good) as client:
            (outcome,) = await deliver_batches(client, batches(3), concurrency=1, policy=FAST)
        assert outcome.status == "acknowledged"
        without_cert = PartnerSettings(
            api_url=stub.url, api_token=None, ca_bundle=tmp_path / "ca.pem"
        )
        async with PartnerClient(without_cert) as client:
            policy = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
            (outcome,) = await deliver_batches(client, batches(3), concurrency=1, policy=policy)
        assert outcome.status == "failed"
    assert len(stub.accepted) == 3


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_start_session_with_an_untrusted_certificate_fails_fast(tmp_path: Path) -> None:
    """The data requests' rule for transport failures holds for startSession too: a
    certificate problem does not heal, so it is not retried and is not tried again."""
    _certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    async with run_stub_server(ssl_context=server_context) as stub:
        auth = SessionTokenAuth(stub.url + contract.START_SESSION_PATH)
        async with aiohttp.ClientSession() as session:  # trusts the system CAs only
            with pytest.raises(PartnerAuthError) as first:
                await auth.headers(session)
            with pytest.raises(PartnerAuthError) as second:
                await auth.headers(session)
    assert first.value.transient is False
    assert second.value is first.value  # remembered: no second handshake
