"""One HTTP exchange with the partner: the redirect rule and the rule for what heals.

Both the data requests (``customer_sync.adapters.partner_client``) and ``startSession``
(``customer_sync.adapters.auth``) go through ``exchange``, so one place decides:

* **Redirects** (partner-api.md, "More facts", DECISION): aiohttp's own following is off
  (``allow_redirects=False``). At most ONE redirect (301/302/303/307/308) is followed, and
  only to the same origin (scheme, host and port); it is re-sent with the same method, body
  and headers. Anything else (another host, port or scheme, a second redirect, a missing or
  unreadable ``Location``) raises ``RedirectRefused`` before a byte goes to the target: the
  body carries card data and the headers carry the session token.
* **What heals**: one rule for every answer of the partner (``retryable_status``) and
  one for every transport failure (``transient_error``), for data requests and
  ``startSession`` alike. What does not heal is never retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from customer_sync.schemas.errors import CustomerSyncError

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 1


def retryable_status(status: int) -> bool:
    """Answers that can heal by waiting: 408, 425, 429 and 5xx except 501/505."""
    return status in (408, 425, 429) or (status >= 500 and status not in (501, 505))


def transient_error(error: BaseException) -> bool:
    """Transport failures that can heal: timeouts, refused/dropped connections, cut bodies."""
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return False  # a certificate problem does not go away by retrying
    return isinstance(
        error, TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError
    )


class RedirectRefused(CustomerSyncError):
    """The partner redirected where we do not follow; nothing was sent there.

    ``target`` is ``scheme://host:port`` of the redirect (never its path, query string or
    user-info, which may carry secrets), or a short description when there was none.
    """

    def __init__(self, problem: str, target: str) -> None:
        super().__init__(f"redirect refused ({problem}): {target}")
        self.target = target


@dataclass(frozen=True, slots=True)
class Exchange:
    """What came back from one request (after at most one same-origin redirect)."""

    status: int
    payload: bytes
    headers: Mapping[str, str]
    redirected: bool = False


def origin(url: URL) -> str:
    """``scheme://host:port`` of ``url``: what a redirect target is named by."""
    return f"{url.scheme}://{url.raw_host}:{url.port}"


def _target(location: str | None, current: URL) -> URL:
    """The absolute URL a redirect points to, or ``RedirectRefused`` when it cannot be read."""
    if not location or not location.strip():
        raise RedirectRefused("no Location", origin(current))
    try:
        target = current.join(URL(location.strip()))
        if target.scheme not in ("http", "https") or not target.raw_host:
            raise ValueError(location)
        target.port  # noqa: B018 - a garbled port raises here
    except ValueError:
        raise RedirectRefused("unreadable Location", "(unreadable target)") from None
    return target


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
) -> Exchange:
    """Send ``method url`` with ``body``; follow at most one same-origin redirect.

    Transport errors (``aiohttp.ClientError``, ``TimeoutError``) propagate, and so does
    ``RedirectRefused`` (terminal: not retried, not split).
    """
    current, redirects = url, 0
    while True:
        async with session.request(
            method, current, data=body, headers=headers, allow_redirects=False
        ) as answer:
            payload = await answer.read()
            status = answer.status
            location = answer.headers.get("Location")
            answer_headers = CIMultiDict(answer.headers)
        if status not in REDIRECT_STATUSES:
            return Exchange(status, payload, answer_headers, redirected=redirects > 0)
        target = _target(location, current)
        if redirects >= MAX_REDIRECTS:
            raise RedirectRefused("a second redirect", origin(target))
        if origin(target) != origin(url):
            raise RedirectRefused("another origin", origin(target))
        current, redirects = target, redirects + 1
