"""Authentication with the partner, behind one small interface.

``Auth.headers`` gives the headers to send; ``Auth.renew`` is called after a 401 with the
headers that were refused and returns fresh ones (or None when the scheme cannot renew).
Two schemes (partner-api.md, DECISION): the partner's session token and a static bearer.

Tokens live in ``SecretStr`` and never appear in a repr, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

import aiohttp
import orjson
from pydantic import SecretStr
from yarl import URL

from customer_sync.adapters.http_exchange import (
    RedirectRefused,
    exchange,
    retryable_status,
    transient_error,
)
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError, CustomerSyncError

logger = logging.getLogger(__name__)

# Renew a session token this long before the partner's one hour runs out, so a long run
# does not meet a wall of 401s; a 401 still triggers a renewal if the clocks disagree.
REFRESH_MARGIN_SECONDS = 300.0
SESSION_EXPIRED_TYPE = "SessionValidationException"
"""The partner's error ``type`` of an expired session (it may come as a 500, not a 401)."""
EXPIRY_CLAIM = "sessionExpirationTimestamp"


def session_expiry(token: str) -> float | None:
    """The ``sessionExpirationTimestamp`` of a JWT session token, as epoch seconds.

    The payload is decoded WITHOUT verifying the signature: it only tells us when to renew
    (the partner still checks the token). Seconds or milliseconds since the epoch, or an
    ISO-8601 string (naive means UTC); None when the token is no JWT or has no such claim.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    value = claims.get(EXPIRY_CLAIM) if isinstance(claims, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # ms since 1973
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return number / 1000.0 if number > 1e11 else number
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


class PartnerAuthError(CustomerSyncError):
    """The partner refused to open a session (or could not be reached to open one)."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class Auth(Protocol):
    """Headers that authenticate a request, and how to get fresh ones after a 401."""

    async def headers(self, session: aiohttp.ClientSession) -> Mapping[str, str]: ...

    async def renew(
        self, session: aiohttp.ClientSession, stale: Mapping[str, str]
    ) -> Mapping[str, str] | None: ...


class StaticBearerAuth:
    """A long-lived token sent as ``Authorization: Bearer``; it cannot be renewed."""

    def __init__(self, token: SecretStr | str) -> None:
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        if not secret.get_secret_value().strip():
            raise ConfigError("the partner API token is empty")
        self._headers = {"Authorization": f"Bearer {secret.get_secret_value().strip()}"}

    async def headers(self, session: aiohttp.ClientSession) -> Mapping[str, str]:
        return self._headers

    async def renew(
        self, session: aiohttp.ClientSession, stale: Mapping[str, str]
    ) -> Mapping[str, str] | None:
        return None

    def __repr__(self) -> str:
        return "StaticBearerAuth(token='**********')"


class SessionTokenAuth:
    """The partner's session token: ``startSession`` once, renewed once per expiry.

    Every in-flight batch that meets a 401 calls ``renew`` with the headers it sent. Under
    one lock, only the first caller that still holds the current token starts a session; the
    others find a newer generation and reuse it. So a 401 from many batches costs ONE
    ``startSession``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        refresh_after: float | None = contract.SESSION_LIFETIME_SECONDS - REFRESH_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = URL(base_url.rstrip("/") + contract.START_SESSION_PATH)
        self._wall_clock = wall_clock
        self._expires_at: float | None = None
        """Epoch seconds after which to renew, from the JWT's claim (None: one-hour rule)."""
        self._refresh_after = refresh_after
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: SecretStr | None = None
        self._headers: Mapping[str, str] = {}
        self._issued_at = 0.0
        self._failure: PartnerAuthError | None = None
        self.generation = 0
        """How many sessions this object has started."""

    async def headers(self, session: aiohttp.ClientSession) -> Mapping[str, str]:
        if self._token is None or self._is_old():
            await self._refresh(session, self.generation)
        return self._headers

    async def renew(
        self, session: aiohttp.ClientSession, stale: Mapping[str, str]
    ) -> Mapping[str, str] | None:
        stale_token = stale.get(contract.SESSION_TOKEN_HEADER)
        async with self._lock:
            current = self._token.get_secret_value() if self._token is not None else None
            if current is None or current == stale_token:
                logger.info("session token refused (expired); starting a new session")
                await self._start(session)
        return self._headers

    def _is_old(self) -> bool:
        if self._expires_at is not None:
            return self._wall_clock() >= self._expires_at
        return self._refresh_after is not None and (
            self._clock() - self._issued_at >= self._refresh_after
        )

    async def _refresh(self, session: aiohttp.ClientSession, seen_generation: int) -> None:
        async with self._lock:
            if self.generation == seen_generation:  # nobody refreshed while we waited
                await self._start(session)

    async def _start(self, session: aiohttp.ClientSession) -> None:
        if self._failure is not None:
            raise self._failure
        body = orjson.dumps({"scopes": list(contract.SESSION_SCOPES)})
        headers = {"Content-Type": "application/json"}
        try:
            answer = await exchange(session, "POST", self._url, body, headers)
        except (aiohttp.ClientError, TimeoutError) as error:
            failure = PartnerAuthError(
                f"startSession failed: {type(error).__name__}", transient=transient_error(error)
            )
            if not failure.transient:
                self._failure = failure  # a certificate problem does not heal: fail fast
            raise failure from None
        except RedirectRefused as error:
            # the token would be in the answer: nothing goes there, now or later
            self._failure = PartnerAuthError(f"startSession: {error}", transient=False)
            raise self._failure from None
        payload, status = answer.payload, answer.status
        if status != 200:
            failure = PartnerAuthError(
                f"startSession answered HTTP {status}",
                status=status,
                transient=retryable_status(status),
            )
            if not failure.transient:
                self._failure = failure  # wrong credentials do not heal: fail fast from now on
            raise failure
        try:
            token = orjson.loads(payload)["sessionToken"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise PartnerAuthError("startSession answered without a sessionToken", transient=True)
        self._token = SecretStr(token)
        self._headers = {contract.SESSION_TOKEN_HEADER: token}
        self._issued_at = self._clock()
        self._expires_at = None
        expiry = session_expiry(token)
        if expiry is not None:
            # renew shortly before the partner's own deadline: 5 minutes, or a tenth of a
            # short lifetime (a token valid for 60 s is not renewed on every request)
            remaining = max(0.0, expiry - self._wall_clock())
            self._expires_at = expiry - min(REFRESH_MARGIN_SECONDS, remaining / 10.0)
        self.generation += 1
        logger.info("partner session started (generation %d)", self.generation)

    def __repr__(self) -> str:
        return f"SessionTokenAuth(url={str(self._url)!r}, generation={self.generation})"
