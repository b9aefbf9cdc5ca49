"""What the stand-in partner records: the customers it accepted, each request it answered,
its counters; and the paths and limits it serves by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Fault = int | Literal["drop"]
"""An injected answer: an HTTP status (429 comes with ``Retry-After``) or a dropped connection."""

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_VALIDATION_ERRORS = 200
STATS_PATH = "/_stub/stats"
MOVED_PREFIX = "/_stub/moved"
"""``MOVED_PREFIX + CUSTOMERS_PATH`` serves data requests without redirect faults: the
target of a same-origin redirect that works."""
SESSION_EXPIRED_TYPE = "SessionValidationException"
EXPIRE_TOKENS_PATH = "/_stub/expire-tokens"


@dataclass(slots=True)
class AcceptedCustomer:
    """The last accepted version of one customer."""

    method: str
    document: dict[str, Any] | None
    """The customer's JSON as received (None when the stub keeps no documents)."""
    times: int
    """How many requests carrying this customer were accepted."""


@dataclass(frozen=True, slots=True)
class StubRequest:
    """One request to ``/v2/data/customers`` as the stub answered it."""

    method: str
    request_id: str
    customers: int | None
    """Number of customers in the body (None when the body was not readable)."""
    status: int | Literal["dropped"]


@dataclass
class StubCounters:
    requests: int = 0
    accepted_requests: int = 0
    customers_accepted: int = 0
    sessions_started: int = 0
    unauthorized: int = 0
    rejected: int = 0
    unsupported_media: int = 0
    injected_errors: int = 0
    rate_limited: int = 0
    dropped: int = 0
