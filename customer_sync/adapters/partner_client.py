"""The partner's HTTP API, one attempt at a time.

``PartnerClient`` owns ONE ``aiohttp.ClientSession`` per run (a bounded connection pool,
mutual TLS from certificate paths) and sends one request per ``send`` call. Retries,
back-off and splitting live in ``customer_sync.adapters.delivery``; the only re-try here is the one
immediate re-send after an expired session (a 401, or a 500 whose body ``type`` is
``SessionValidationException``) once the auth scheme has renewed its token. Redirects are
followed (at most one, same origin only) by ``customer_sync.adapters.http_exchange``.

Every answer's body is parsed, a 200 included: a 200 whose body carries
``validationErrors`` or an error ``type`` gets a ``problem`` (see ``PartnerResponse``), and
``adapters.delivery`` decides what it means for the customers it names. A 200 whose body is
unreadable or has no ``requestId`` is an acknowledgement under the echoed header id (the
partner's documented 200 carries only ``requestId``; refusing it would re-send delivered
customers); it is logged (without the body).

Plain http is refused unless the host is loopback (the stand-in server).
"""

from __future__ import annotations

import ipaddress
import logging
import re
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

from customer_sync.adapters.auth import (
    SESSION_EXPIRED_TYPE,
    Auth,
    SessionTokenAuth,
    StaticBearerAuth,
)
from customer_sync.adapters.http_exchange import exchange
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError

if (
    TYPE_CHECKING
):  # customer_sync.schemas.records imports pandas: keep it out of the stand-in's start-up
    from customer_sync.schemas.records import Method

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
    """The parsed error body of a non-2xx answer, when it was readable; for a 2xx, only
    when the body carries ``validationErrors`` or an error ``type`` (``has_errors``)."""
    retry_after: float | None = None
    """Seconds to wait from ``Retry-After``, when the answer carried one."""

    @property
    def ok(self) -> bool:
        """A 2xx whose body carries no error: every customer sent is acknowledged."""
        return 200 <= self.status < 300 and self.problem is None

    @property
    def ok_with_errors(self) -> bool:
        """A 2xx whose body carries errors: NOT an acknowledgement of the customers named."""
        return 200 <= self.status < 300 and self.problem is not None

    @property
    def session_expired(self) -> bool:
        """A 401, or the partner's 500 whose body ``type`` is ``SessionValidationException``."""
        if self.status == 401:
            return True
        problem = self.problem
        return self.status == 500 and problem is not None and problem.type == SESSION_EXPIRED_TYPE


_SANE_REQUEST_ID = re.compile(r"[\w.:-]{1,128}")


def _request_id(value: object) -> str | None:
    """A requestId from the partner's body, when it looks like one (it is stored and shown:
    a body that echoes anything else there must not put it into the report)."""
    return value if isinstance(value, str) and _SANE_REQUEST_ID.fullmatch(value) else None


def _has_errors(problem: ProblemDetails) -> bool:
    """A 2xx body that reports an error: validationErrors, or a ``type`` other than blank."""
    return bool(problem.validation_errors) or (
        problem.type is not None and problem.type not in ("", "about:blank")
    )


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
        request_id=_request_id(parsed.get("requestId")),
    )


class PartnerClient:
    """One session with the partner for one run: ``async with PartnerClient(settings) as c``."""

    def __init__(self, settings: PartnerSettings | None = None, *, auth: Auth | None = None):
        self.settings = settings or PartnerSettings()
        self._url = customers_url(self.settings.api_url)
        self._ssl = ssl_context(self.settings)
        self.auth = auth or default_auth(self.settings)
        self._session: aiohttp.ClientSession | None = None
        self._credentials: set[str] = set()
        self._unreadable_acknowledgements = 0

    def credentials(self) -> frozenset[str]:
        """Every credential value sent in this run (for masking echoed error text only;
        never store or log it)."""
        values = set(self._credentials)
        values |= {v.partition(" ")[2] for v in self._credentials if v.startswith("Bearer ")}
        return frozenset(v for v in values if v)

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
        """One attempt of ``method /v2/data/customers``; after an expired session (401, or
        500 ``SessionValidationException``), renew (single-flight) and re-send once.

        Transport errors (``aiohttp.ClientError``, ``TimeoutError``),
        ``adapters.auth.PartnerAuthError`` and ``adapters.http_exchange.RedirectRefused``
        propagate to the caller.
        """
        session = self.session
        auth_headers = await self.auth.headers(session)
        response = await self._attempt(session, method, body, request_id, auth_headers)
        if response.session_expired:
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
        self._credentials.update(auth_headers.values())
        headers = {
            "Content-Type": "application/json",  # the partner answers 415 without it
            contract.REQUEST_ID_HEADER: request_id,
            **auth_headers,
        }
        answer = await exchange(session, method, self._url, body, headers)
        status, payload = answer.status, answer.payload
        echoed = _request_id(answer.headers.get(contract.REQUEST_ID_HEADER))
        problem = _problem(payload)
        partner_id = problem.request_id if problem is not None and problem.request_id else echoed
        if 200 <= status < 300:
            if problem is None or problem.request_id is None:
                self._unreadable_acknowledgements += 1
                log = logger.warning if self._unreadable_acknowledgements == 1 else logger.debug
                log(
                    "HTTP %d without a readable requestId (request %s); taken as acknowledged "
                    "(%d so far)", status, request_id, self._unreadable_acknowledgements,
                )  # fmt: skip
            errors = problem if problem is not None and _has_errors(problem) else None
            return PartnerResponse(status, partner_id, errors)
        retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
        return PartnerResponse(status, partner_id, problem, retry_after)

    def __repr__(self) -> str:
        return f"PartnerClient(url={str(self._url)!r}, auth={self.auth!r})"
