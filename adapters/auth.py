"""Authentication with the partner, behind one small interface.

``Auth.headers`` gives the headers to send; ``Auth.renew`` is called after a 401 with the
headers that were refused and returns fresh ones (or None when the scheme cannot renew).
Two schemes (partner-api.md, DECISION): the partner's session token and a static bearer.

Tokens live in ``SecretStr`` and never appear in a repr, a log line or an exception.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import orjson
from pydantic import SecretStr

from schemas import contract
from schemas.errors import ConfigError, CustomerSyncError

logger = logging.getLogger(__name__)

API_TOKEN_ENV = "CUSTOMER_SYNC_API_TOKEN"  # noqa: S105 - the variable name, not a token
# Renew a session token this long before the partner's one hour runs out, so a long run
# does not meet a wall of 401s; a 401 still triggers a renewal if the clocks disagree.
REFRESH_MARGIN_SECONDS = 300.0


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

    @classmethod
    def from_env(cls) -> StaticBearerAuth:
        token = os.environ.get(API_TOKEN_ENV, "")
        if not token:
            raise ConfigError(f"{API_TOKEN_ENV} is not set")
        return cls(token)

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
    ) -> None:
        self._url = base_url.rstrip("/") + contract.START_SESSION_PATH
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
                logger.info("session token refused (401); starting a new session")
                await self._start(session)
        return self._headers

    def _is_old(self) -> bool:
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
            async with session.post(self._url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise PartnerAuthError(
                f"startSession failed: {type(error).__name__}", transient=True
            ) from None
        if status != 200:
            failure = PartnerAuthError(
                f"startSession answered HTTP {status}",
                status=status,
                transient=status in (408, 429) or status >= 500,
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
        self.generation += 1
        logger.info("partner session started (generation %d)", self.generation)

    def __repr__(self) -> str:
        return f"SessionTokenAuth(url={self._url!r}, generation={self.generation})"
