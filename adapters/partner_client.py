"""The partner's HTTP API, one attempt at a time.

``PartnerClient`` owns ONE ``aiohttp.ClientSession`` per run (a bounded connection pool,
mutual TLS from certificate paths) and sends one request per ``send`` call. Retries,
back-off and splitting live in ``adapters.delivery``; the only re-try here is the one
immediate re-send after a 401 once the auth scheme has renewed its token.

Plain http is refused unless the host is loopback (the stand-in server).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import orjson
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from yarl import URL

from adapters.auth import Auth, SessionTokenAuth, StaticBearerAuth
from schemas import contract
from schemas.errors import ConfigError

if TYPE_CHECKING:  # schemas.records imports pandas: keep it out of the stand-in's start-up
    from schemas.records import Method

logger = logging.getLogger(__name__)


class PartnerSettings(BaseSettings):
    """Where the partner is and how to prove who we are (``CUSTOMER_SYNC_*`` variables)."""

    model_config = SettingsConfigDict(
        env_prefix="CUSTOMER_SYNC_", env_ignore_empty=True, extra="ignore"
    )

    api_url: str | None = None
    """Base URL, e.g. ``https://pub-api-us.sandbox.cardlytics.com``."""
    api_token: SecretStr | None = None
    """Static bearer token; when absent the partner's session token (startSession) is used."""
    client_cert: Path | None = None
    """PEM client certificate for mutual TLS."""
    client_key: Path | None = None
    """PEM private key of the client certificate."""
    client_key_password: SecretStr | None = None
    ca_bundle: Path | None = None
    """CA bundle to trust instead of the system store."""
    request_timeout: float = 60.0
    """Seconds for one attempt, from connecting to the last byte of the answer."""
    connect_timeout: float = 10.0
    max_connections: int = 64
    """Size of the connection pool; keep it at or above the delivery concurrency."""

    @classmethod
    def from_environment(cls, **overrides: Any) -> PartnerSettings:
        """``CUSTOMER_SYNC_*`` settings; the ``overrides`` that are not None take precedence.

        A malformed variable becomes a ``ConfigError`` naming it (never its value).
        """
        given = {name: value for name, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as error:
            problems = "; ".join(
                f"CUSTOMER_SYNC_{'.'.join(map(str, item['loc'])).upper()}: {item['msg']}"
                for item in error.errors(include_input=False, include_url=False)
            )
            raise ConfigError(f"partner settings: {problems}") from None


@dataclass(frozen=True, slots=True)
class ProblemDetails:
    """The partner's error body: ``type, title, status, validationErrors, requestId``."""

    type: str | None
    title: str | None
    status: int | None
    validation_errors: tuple[Any, ...]
    request_id: str | None


@dataclass(frozen=True, slots=True)
class PartnerResponse:
    """What one attempt got back."""

    status: int
    request_id: str | None
    """The partner's requestId (from the body, else the echoed header)."""
    problem: ProblemDetails | None = None
    """The parsed error body of a non-2xx answer, when it was readable."""
    retry_after: float | None = None
    """Seconds to wait from ``Retry-After``, when the answer carried one."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def customers_url(api_url: str | None) -> URL:
    """The ``/v2/data/customers`` URL under ``api_url``; refuses http to anything but loopback."""
    if not api_url:
        raise ConfigError("no partner URL: pass --api-url or set CUSTOMER_SYNC_API_URL")
    base = URL(api_url)
    if base.scheme not in ("http", "https") or not base.host:
        raise ConfigError(f"partner URL must be http(s)://host[:port]: {api_url!r}")
    if base.scheme == "http" and not is_loopback(base.host):
        raise ConfigError(f"plain http is only allowed to loopback; use https for {base.host}")
    if base.user or base.password or base.query_string:
        raise ConfigError("partner URL must not carry credentials or a query string")
    return URL(str(base).rstrip("/") + contract.CUSTOMERS_PATH)


def ssl_context(settings: PartnerSettings) -> ssl.SSLContext | None:
    """A client context for mutual TLS from the settings' paths (None: system defaults)."""
    cert, key = settings.client_cert, settings.client_key
    if (cert is None) != (key is None):
        raise ConfigError("set both CUSTOMER_SYNC_CLIENT_CERT and CUSTOMER_SYNC_CLIENT_KEY")
    if cert is None and settings.ca_bundle is None:
        return None
    for path in (cert, key, settings.ca_bundle):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path}: no such file")
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_bundle) if settings.ca_bundle else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None:
            password = settings.client_key_password
            context.load_cert_chain(
                cert, key, password.get_secret_value() if password is not None else None
            )
    except ssl.SSLError as error:
        raise ConfigError(f"cannot load the client certificate {cert}: {error.reason}") from None
    return context


def default_auth(settings: PartnerSettings) -> Auth:
    """A static bearer when ``CUSTOMER_SYNC_API_TOKEN`` is set, else the session token."""
    if settings.api_token is not None:
        return StaticBearerAuth(settings.api_token)
    return SessionTokenAuth(str(settings.api_url))


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _problem(payload: bytes) -> ProblemDetails | None:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    errors = parsed.get("validationErrors")
    status = parsed.get("status")
    return ProblemDetails(
        type=parsed.get("type") if isinstance(parsed.get("type"), str) else None,
        title=parsed.get("title") if isinstance(parsed.get("title"), str) else None,
        status=status if isinstance(status, int) else None,
        validation_errors=tuple(errors) if isinstance(errors, list) else (),
        request_id=parsed.get("requestId") if isinstance(parsed.get("requestId"), str) else None,
    )


class PartnerClient:
    """One session with the partner for one run: ``async with PartnerClient(settings) as c``."""

    def __init__(self, settings: PartnerSettings | None = None, *, auth: Auth | None = None):
        self.settings = settings or PartnerSettings()
        self._url = customers_url(self.settings.api_url)
        self._ssl = ssl_context(self.settings)
        self.auth = auth or default_auth(self.settings)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        settings = self.settings
        connector = aiohttp.TCPConnector(
            limit=settings.max_connections,
            ssl=self._ssl if self._ssl is not None else True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.request_timeout, connect=settings.connect_timeout
            ),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("PartnerClient is not open; use it as 'async with'")
        return self._session

    async def send(self, method: Method, body: bytes, request_id: str) -> PartnerResponse:
        """One attempt of ``method /v2/data/customers``; after a 401, renew and re-send once.

        Transport errors (``aiohttp.ClientError``, ``TimeoutError``) and
        ``adapters.auth.PartnerAuthError`` propagate to the caller.
        """
        session = self.session
        auth_headers = await self.auth.headers(session)
        response = await self._attempt(session, method, body, request_id, auth_headers)
        if response.status == 401:
            fresh = await self.auth.renew(session, auth_headers)
            if fresh is not None:
                response = await self._attempt(session, method, body, request_id, fresh)
        return response

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: Method,
        body: bytes,
        request_id: str,
        auth_headers: Any,
    ) -> PartnerResponse:
        headers = {contract.REQUEST_ID_HEADER: request_id, **auth_headers}
        async with session.request(method, self._url, data=body, headers=headers) as answer:
            payload = await answer.read()
            status = answer.status
            echoed = answer.headers.get(contract.REQUEST_ID_HEADER)
            retry_after = answer.headers.get("Retry-After")
        if 200 <= status < 300:
            partner_id = echoed
            try:
                parsed = orjson.loads(payload)
                if isinstance(parsed, dict) and isinstance(parsed.get("requestId"), str):
                    partner_id = parsed["requestId"]
            except orjson.JSONDecodeError:
                pass
            return PartnerResponse(status, partner_id)
        problem = _problem(payload)
        partner_id = problem.request_id if problem is not None and problem.request_id else echoed
        return PartnerResponse(status, partner_id, problem, retry_after_seconds(retry_after))

    def __repr__(self) -> str:
        return f"PartnerClient(url={str(self._url)!r}, auth={self.auth!r})"
