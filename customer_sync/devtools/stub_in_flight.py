"""The stand-in partner's count of data requests in flight, and its crowding fault.

``InFlightMeter`` wraps the data endpoints (``/v2/data/customers``) of the stand-in: it
counts the requests being answered at each moment and keeps the most ever seen
(``most``), which is how tests check a concurrency budget from the partner's side. With
``crowd_limit`` set it also plays a partner that protects itself: a request arriving while
``crowd_limit`` others are in flight is answered 429 at once, with ``Retry-After``, and
not recorded as accepted (the customers in it were not taken).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from customer_sync.schemas import contract

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class InFlightMeter:
    """Data requests in flight at the stand-in, and the crowding fault."""

    crowd_limit: int | None = None
    """Above this many requests in flight, answer 429 (None: never)."""
    retry_after: float = 0.05
    """Seconds sent in the crowding 429's ``Retry-After``."""
    now: int = 0
    most: int = 0
    """The most data requests ever in flight at once (429s of the crowding fault excluded)."""
    crowded: int = 0
    """Requests answered 429 by the crowding fault."""

    def __post_init__(self) -> None:
        if self.crowd_limit is not None and self.crowd_limit < 1:
            raise ValueError("crowd_limit must be at least 1")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.endswith(contract.CUSTOMERS_PATH):
            return await handler(request)
        if self.crowd_limit is not None and self.now >= self.crowd_limit:
            self.crowded += 1
            return web.json_response(
                {
                    "type": "TooManyRequests",
                    "title": "Too many requests in flight",
                    "status": 429,
                    "validationErrors": [],
                },
                status=429,
                headers={"Retry-After": f"{self.retry_after:g}"},
            )
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await handler(request)
        finally:
            self.now -= 1

    def reset(self) -> None:
        """Forget the peak and the count of 429s (between two runs of one test)."""
        self.most = self.now
        self.crowded = 0
