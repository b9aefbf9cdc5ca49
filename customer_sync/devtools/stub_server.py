"""The stand-in partner server: the contract of docs/partner-contract.md, strictly, on loopback.

Tests, the demo and the benchmarks talk to it over real HTTP on 127.0.0.1. It validates every
request body with ``schemas.document.CustomersRequest`` (switch off with ``validate=False``
for raw throughput), records what it accepted, and injects faults on request
(``StubFaults``).

Three ways to run it:

* ``async with run_stub_server(faults) as stub:`` inside a running event loop;
* ``with serve_stub_in_thread(faults) as stub:`` from synchronous code (own loop, own thread);
* ``python -m customer_sync.devtools.stub_server`` (or ``customer-sync stub-api``) in another
  process; ``serve_stub_in_subprocess`` wraps that and reads the bound URL back.

DECISION (the partner's pages are silent): a 400 means nothing in the request was accepted;
``validationErrors`` items are objects ``{customerIndex, sourceCustomerId, field, message}``
(the index into the request's ``customers``; null for errors about the whole body).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import json
import logging
import random
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import ValidationError

from customer_sync.adapters.partner_client import is_loopback
from customer_sync.devtools.stub_in_flight import InFlightMeter
from customer_sync.schemas import contract
from customer_sync.schemas.document import CustomersRequest, RequestProblem, request_problems
from customer_sync.schemas.errors import ConfigError

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class StubFaults:
    """What goes wrong, on purpose. Shares are probabilities per data request (seeded RNG).

    The deterministic knobs (``fail_first_n``, ``fail_each_batch``, ``reject_ids``) make
    tests independent of timing and of the order in which concurrent requests arrive.
    """

    error_share: float = 0.0
    """Share of data requests answered 500 or 503 (half each)."""
    rate_limit_share: float = 0.0
    """Share of data requests answered 429 with ``Retry-After: retry_after``."""
    retry_after: float = 1.0
    """Seconds sent in ``Retry-After`` (fractions allowed, for fast tests)."""
    latency: float = 0.0
    """Seconds added before answering each data request."""
    drop_share: float = 0.0
    """Share of data requests whose connection is closed without an answer."""
    token_lifetime: float = float(contract.SESSION_LIFETIME_SECONDS)
    """Seconds a session token stays valid."""
    reject_ids: frozenset[str] = frozenset()
    """sourceCustomerIds answered with 400 (the whole request, naming these customers)."""
    fail_first_n: int = 0
    """The first n data requests (arrival order) are answered with ``fail_with``."""
    fail_each_batch: int = 0
    """Every distinct request body is answered with ``fail_with`` this many times first."""
    fail_with: Fault = 503
    drop_after_accept: bool = False
    """Dropped connections happen after the customers were recorded (an ambiguous outcome)."""
    anonymous_errors: bool = False
    """validationErrors name no customer (neither index nor id), like a terse partner."""
    redirect_to: str | None = None
    """Data requests to ``CUSTOMERS_PATH`` are answered ``redirect_status`` to this URL
    (after the token check; ``MOVED_PREFIX`` paths are never redirected)."""
    redirect_status: int = 307
    redirect_session_to: str | None = None
    """``startSession`` is answered ``redirect_status`` to this URL."""
    echo_errors: bool = False
    """Every authorised data request is answered 400 with a ``title`` and
    ``validationErrors`` that echo the request's headers (the token included) and values
    (postal codes, last4, iin, whole documents), naming each customer."""
    ok_with_errors_ids: frozenset[str] = frozenset()
    """Customers named in the ``validationErrors`` of a 200 and NOT accepted; the others of
    the request are accepted. With ``anonymous_errors`` the errors name nobody and nothing
    of that request is accepted."""
    expiry_as_500: bool = False
    """An unknown or expired session token is answered 500 ``SessionValidationException``."""
    jwt_tokens: bool = False
    """Session tokens are JWT-shaped, carrying ``sessionExpirationTimestamp`` (epoch s)."""
    seed: int | None = 0

    def __post_init__(self) -> None:
        shares = (self.error_share, self.rate_limit_share, self.drop_share)
        if any(not 0.0 <= share <= 1.0 for share in shares) or sum(shares) > 1.0:
            raise ValueError("fault shares must each be within 0..1 and sum to at most 1")
        if self.latency < 0 or self.retry_after < 0 or self.token_lifetime <= 0:
            raise ValueError("latency and retry_after must be >= 0, token_lifetime > 0")


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


def _problem(
    status: int,
    title: str,
    request_id: str | None,
    validation_errors: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "validationErrors": list(validation_errors),
        "requestId": request_id,
    }
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/problem+json",
        headers=headers,
    )


def _dotted(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def validation_errors(error: ValidationError, body: bytes) -> list[dict[str, Any]]:
    """The partner-style ``validationErrors`` of a failed body: index, id, field, message.

    Messages come from pydantic without the offending input, so no card data leaks.
    """
    try:
        parsed = orjson.loads(body)
        customers = parsed.get("customers") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        customers = None
    items = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        loc = item["loc"]
        index = loc[1] if len(loc) >= 2 and loc[0] == "customers" else None
        customer_id = None
        if isinstance(index, int) and isinstance(customers, list) and index < len(customers):
            raw = customers[index]
            candidate = raw.get("sourceCustomerId") if isinstance(raw, dict) else None
            customer_id = candidate if isinstance(candidate, str) else None
        field_path = _dotted(loc[2:]) if isinstance(index, int) else _dotted(loc)
        items.append(
            {
                "customerIndex": index if isinstance(index, int) else None,
                "sourceCustomerId": customer_id,
                "field": field_path or ("(customer)" if isinstance(index, int) else "(body)"),
                "message": item["msg"],
            }
        )
        if len(items) >= MAX_VALIDATION_ERRORS:
            break
    return items


class StubPartner:
    """The stand-in partner: an aiohttp application plus what it recorded.

    ``accepted``, ``requests`` and ``counters`` are mutated only by the server's event loop;
    read them after the traffic you care about has been answered.
    """

    def __init__(
        self,
        faults: StubFaults | None = None,
        *,
        validate: bool = True,
        keep_documents: bool = True,
        bearer_token: str | None = None,
        max_recorded_requests: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
        puts_need_create: bool = True,
        crowd_limit: int | None = None,
    ) -> None:
        self.faults = faults or StubFaults()
        # requests in flight (and the 429s above ``crowd_limit``): devtools/stub_in_flight.py
        self.in_flight = InFlightMeter(crowd_limit=crowd_limit)
        # A PUT of a customer this instance never accepted is a 400 naming it, as the
        # partner would answer (customer_sync.schemas.document.request_problems); off for a stand-in
        # that must accept updates of customers created before it started.
        self.puts_need_create = puts_need_create
        self._ssl = ssl_context
        self.validate = validate
        self.keep_documents = keep_documents
        self.accepted: dict[str, AcceptedCustomer] = {}
        self.requests: deque[StubRequest] = deque(maxlen=max_recorded_requests)
        self.counters = StubCounters()
        self.url = ""
        self._bearer = bearer_token.encode() if bearer_token else None
        self._clock = clock
        self._rng = random.Random(self.faults.seed)
        self._tokens: dict[str, tuple[int, float]] = {}  # token -> (generation, issued at)
        self._generation = 0
        self._oldest_valid_generation = 0
        self._seen_bodies: dict[int, int] = {}
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def application(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY_BYTES, middlewares=[self.in_flight.middleware]
        )
        router = app.router
        router.add_post(contract.CUSTOMERS_PATH, self._customers)
        router.add_put(contract.CUSTOMERS_PATH, self._customers)
        router.add_post(MOVED_PREFIX + contract.CUSTOMERS_PATH, self._customers)
        router.add_put(MOVED_PREFIX + contract.CUSTOMERS_PATH, self._customers)
        router.add_post(contract.START_SESSION_PATH, self._start_session)
        router.add_get(STATS_PATH, self._stats)
        router.add_post(EXPIRE_TOKENS_PATH, self._expire)
        for path in (contract.CUSTOMERS_PATH, contract.START_SESSION_PATH):
            router.add_route("*", path, self._method_not_allowed)
        router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if not is_loopback(host):
            raise ConfigError(f"the stand-in server only listens on loopback, not {host!r}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            sock.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        self._runner = web.AppRunner(
            self.application(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock, backlog=1024, ssl_context=self._ssl).start()
        bound_port = sock.getsockname()[1]
        scheme = "https" if self._ssl is not None else "http"
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"{scheme}://{shown}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def expire_tokens(self) -> None:
        """Make every session token issued so far answer 401 (thread-safe)."""
        self._oldest_valid_generation = self._generation + 1

    def stats(self) -> dict[str, Any]:
        return {
            **asdict(self.counters),
            "customers_unique": len(self.accepted),
            "max_customers_per_request": max((r.customers or 0 for r in self.requests), default=0),
            "most_in_flight": self.in_flight.most,
            "crowded": self.in_flight.crowded,
        }

    # --- auth ----------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        token = request.headers.get(contract.SESSION_TOKEN_HEADER)
        if token is not None:
            issued = self._tokens.get(token)
            if issued is None:
                return False
            generation, issued_at = issued
            if (
                generation < self._oldest_valid_generation
                or self._clock() - issued_at >= self.faults.token_lifetime
            ):
                del self._tokens[token]
                return False
            return True
        authorization = request.headers.get("Authorization", "")
        scheme, _, credential = authorization.partition(" ")
        return (
            self._bearer is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(credential.strip().encode(), self._bearer)
        )

    def _unauthorised(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        self.counters.unauthorized += 1
        if self.faults.expiry_as_500:
            self._record(request, request_id, _count_customers(body), 500)
            answer = _problem(500, "Session is not valid", request_id)
            payload = orjson.loads(answer.body)  # type: ignore[arg-type]
            answer.body = orjson.dumps({**payload, "type": SESSION_EXPIRED_TYPE})
            return answer
        self._record(request, request_id, _count_customers(body), 401)
        return _problem(401, "Unauthorized", request_id)

    def _new_token(self) -> str:
        if not self.faults.jwt_tokens:
            return secrets.token_urlsafe(32)
        expires = int(time.time() + self.faults.token_lifetime)

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

        claims = {"sessionExpirationTimestamp": expires, "jti": secrets.token_hex(8)}
        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"

    async def _start_session(self, request: web.Request) -> web.Response:
        request_id = request.headers.get(contract.REQUEST_ID_HEADER) or str(uuid.uuid4())
        if self.faults.redirect_session_to is not None:
            return _redirect(self.faults.redirect_status, self.faults.redirect_session_to)
        if request.content_type != "application/json":
            return _problem(415, "Unsupported Media Type", request_id)
        try:
            parsed = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _problem(400, "Bad Request", request_id, [_body_error("unreadable JSON")])
        scopes = parsed.get("scopes") if isinstance(parsed, dict) else None
        if (
            not isinstance(scopes, list)
            or set(parsed) != {"scopes"}
            or not set(contract.SESSION_SCOPES) <= set(scopes)
        ):
            message = f"body must be {{'scopes': {list(contract.SESSION_SCOPES)}}}"
            return _problem(400, "Bad Request", request_id, [_body_error(message, "scopes")])
        token = self._new_token()
        self._generation += 1
        self._tokens[token] = (self._generation, self._clock())
        self.counters.sessions_started += 1
        return web.Response(
            body=orjson.dumps({"sessionToken": token}), content_type="application/json"
        )

    # --- data ----------------------------------------------------------------------------
    def _pick_fault(self, body: bytes) -> Fault | None:
        faults = self.faults
        if self.counters.requests <= faults.fail_first_n:
            return faults.fail_with
        if faults.fail_each_batch:
            key = hash(body)
            seen = self._seen_bodies.get(key, 0)
            self._seen_bodies[key] = seen + 1
            if seen < faults.fail_each_batch:
                return faults.fail_with
        if faults.drop_share or faults.rate_limit_share or faults.error_share:
            draw = self._rng.random()
            if draw < faults.drop_share:
                return "drop"
            draw -= faults.drop_share
            if draw < faults.rate_limit_share:
                return 429
            draw -= faults.rate_limit_share
            if draw < faults.error_share:
                return 500 if self._rng.random() < 0.5 else 503
        return None

    def _record(
        self,
        request: web.Request,
        request_id: str,
        customers: int | None,
        status: int | Literal["dropped"],
    ) -> None:
        self.requests.append(StubRequest(request.method, request_id, customers, status))

    async def _customers(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        answer = self._answer(request, await request.read())
        if self.faults.latency:
            # The answer leaves `latency` after the request arrived, the stub's own work
            # included: a burst of concurrent requests all see the same latency.
            await asyncio.sleep(max(0.0, arrived + self.faults.latency - loop.time()))
        return _drop(request) if answer is None else answer

    def _answer(self, request: web.Request, body: bytes) -> web.Response | None:
        """The answer to one data request, or None for a dropped connection."""
        self.counters.requests += 1
        request_id = request.headers.get(contract.REQUEST_ID_HEADER) or str(uuid.uuid4())
        # the partner's order: who is asking, then what goes wrong, then what was sent
        if not self._authorised(request):
            return self._unauthorised(request, request_id, body)
        faults = self.faults
        if faults.redirect_to is not None and request.path == contract.CUSTOMERS_PATH:
            self._record(request, request_id, _count_customers(body), faults.redirect_status)
            return _redirect(faults.redirect_status, faults.redirect_to)
        fault = self._pick_fault(body)
        if fault is not None and not (fault == "drop" and faults.drop_after_accept):
            return self._inject(request, request_id, body, fault)
        if faults.echo_errors:
            return self._echo(request, request_id, body)
        if faults.ok_with_errors_ids:
            answer = self._ok_with_errors(request, request_id, body)
            if answer is not None:
                return answer
        if request.content_type != "application/json":
            self.counters.unsupported_media += 1
            self._record(request, request_id, None, 415)
            return _problem(415, "Unsupported Media Type", request_id)
        return self._accept(request, request_id, body, drop_after=fault == "drop")

    def _inject(
        self, request: web.Request, request_id: str, body: bytes, fault: Fault
    ) -> web.Response | None:
        count = _count_customers(body)
        if fault == "drop":
            self.counters.dropped += 1
            self._record(request, request_id, count, "dropped")
            return None
        headers = None
        if fault == 429:
            self.counters.rate_limited += 1
            headers = {"Retry-After": _seconds(self.faults.retry_after)}
        else:
            self.counters.injected_errors += 1
        self._record(request, request_id, count, fault)
        return _problem(fault, "Injected fault", request_id, headers=headers)

    def _echo(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        """A careless partner's 400: everything it received, echoed back (issue 11)."""
        headers = {str(name): value for name, value in request.headers.items()}
        try:
            customers = orjson.loads(body)["customers"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            customers = []
        items: list[dict[str, Any]] = [
            {
                "customerIndex": None,
                "sourceCustomerId": None,
                "field": "(headers)",
                "message": f"request headers were {headers}",
                "headers": headers,
            }
        ]
        for index, customer in enumerate(customers):
            values = _card_values(customer)
            items.append(
                {
                    "customerIndex": index,
                    "sourceCustomerId": customer.get("sourceCustomerId"),
                    "field": "accounts[0].cards[0].last4",
                    "message": f"values {values} in {orjson.dumps(customer).decode()}",
                    "rejectedValue": customer,
                }
            )
            items.append(
                {
                    "customerIndex": index,
                    "sourceCustomerId": customer.get("sourceCustomerId"),
                    "field": "postalCode",
                    "message": f"postal code {values.get('postalCode')} with token "
                    f"{request.headers.get(contract.SESSION_TOKEN_HEADER)}",
                }
            )
            items.append(  # the same values, plain, under a field that is not sensitive
                {
                    "customerIndex": index,
                    "sourceCustomerId": customer.get("sourceCustomerId"),
                    "field": "accounts[0].status",
                    "message": " ".join(str(v) for v in values.values())
                    + f" {request.headers.get(contract.SESSION_TOKEN_HEADER)}",
                }
            )
        response = self._bad_request(request, request_id, len(customers), items)
        parsed = orjson.loads(response.body)  # type: ignore[arg-type]
        parsed["title"] = (
            f"Validation failed for {headers} and {body[:300].decode(errors='replace')}"
        )
        parsed["detail"] = body.decode(errors="replace")
        response.body = orjson.dumps(parsed)
        return response

    def _ok_with_errors(
        self, request: web.Request, request_id: str, body: bytes
    ) -> web.Response | None:
        """A 200 whose validationErrors name the ``ok_with_errors_ids`` of the request (not
        accepted); the rest is accepted as usual. None: the request names none of them."""
        try:
            customers = orjson.loads(body)["customers"]
            ids = [customer["sourceCustomerId"] for customer in customers]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        named = [i for i, cid in enumerate(ids) if cid in self.faults.ok_with_errors_ids]
        if not named:
            return None
        anonymous = self.faults.anonymous_errors
        if not anonymous and len(named) < len(ids):
            rest = [c for i, c in enumerate(customers) if i not in named]
            accepted = self._accept(
                request, request_id, orjson.dumps({"customers": rest}), drop_after=False
            )
            if accepted is None or accepted.status != 200:
                return accepted
            self.requests.pop()  # recorded again below, as the 200 with errors it is
        errors = [
            {
                "customerIndex": None if anonymous else index,
                "sourceCustomerId": None if anonymous else ids[index],
                "field": "sourceCustomerId",
                "message": "customer not processed (configured 200-with-errors id)",
            }
            for index in named
        ]
        self._record(request, request_id, len(ids), 200)
        payload = {"type": "ValidationException", "validationErrors": errors}
        return web.Response(
            body=orjson.dumps({**payload, "requestId": request_id}),
            content_type="application/json",
            headers={contract.REQUEST_ID_HEADER: request_id},
        )

    def _bad_request(
        self, request: web.Request, request_id: str, count: int | None, errors: list[dict[str, Any]]
    ) -> web.Response:
        self.counters.rejected += 1
        self._record(request, request_id, count, 400)
        if self.faults.anonymous_errors:
            errors = [{**item, "customerIndex": None, "sourceCustomerId": None} for item in errors]
        return _problem(400, "Validation failed", request_id, errors)

    def _accept(
        self, request: web.Request, request_id: str, body: bytes, *, drop_after: bool
    ) -> web.Response | None:
        parsed: Any = None
        if self.validate:
            try:
                valid = CustomersRequest.model_validate_json(body)
            except ValidationError as error:
                errors = validation_errors(error, body)
                return self._bad_request(request, request_id, _count_customers(body), errors)
            ids = [customer.sourceCustomerId for customer in valid.customers]
            created = self.accepted if self.puts_need_create else _EVERYONE
            problems = request_problems(valid, request.method, created)
            if problems:
                return self._bad_request(
                    request, request_id, len(ids), [_problem_item(p) for p in problems]
                )
        else:
            try:
                parsed = orjson.loads(body)
                ids = [customer["sourceCustomerId"] for customer in parsed["customers"]]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return self._bad_request(request, request_id, None, [_body_error("unreadable")])
        rejected = [
            {
                "customerIndex": index,
                "sourceCustomerId": customer_id,
                "field": "sourceCustomerId",
                "message": "customer refused by the stand-in server (configured reject id)",
            }
            for index, customer_id in enumerate(ids)
            if customer_id in self.faults.reject_ids
        ]
        if rejected:
            return self._bad_request(request, request_id, len(ids), rejected)
        documents: list[Any] = [None] * len(ids)
        if self.keep_documents:
            documents = (parsed if parsed is not None else orjson.loads(body))["customers"]
        method = request.method
        accepted = self.accepted
        for customer_id, document in zip(ids, documents, strict=True):
            previous = accepted.get(customer_id)
            if previous is None:
                accepted[customer_id] = AcceptedCustomer(method, document, 1)
            else:
                previous.method, previous.document = method, document
                previous.times += 1
        self.counters.accepted_requests += 1
        self.counters.customers_accepted += len(ids)
        if drop_after:
            self.counters.dropped += 1
            self._record(request, request_id, len(ids), "dropped")
            return None
        self._record(request, request_id, len(ids), 200)
        return web.Response(
            body=orjson.dumps({"requestId": request_id}),
            content_type="application/json",
            headers={contract.REQUEST_ID_HEADER: request_id},
        )

    # --- the rest ------------------------------------------------------------------------
    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _expire(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return web.json_response({"expired": True})

    async def _method_not_allowed(self, request: web.Request) -> web.Response:
        return _problem(405, "Method Not Allowed", request.headers.get(contract.REQUEST_ID_HEADER))

    async def _not_found(self, request: web.Request) -> web.Response:
        return _problem(404, "Not Found", request.headers.get(contract.REQUEST_ID_HEADER))


class _Everyone:
    """A container holding every customer id: no PUT is of an unknown customer."""

    def __contains__(self, item: object) -> bool:
        return True


_EVERYONE = _Everyone()


def _problem_item(problem: RequestProblem) -> dict[str, Any]:
    """A request-level problem as a partner-style ``validationErrors`` item."""
    return {
        "customerIndex": problem.index,
        "sourceCustomerId": problem.customer_id,
        "field": problem.field,
        "message": problem.message,
    }


def _body_error(message: str, field_name: str = "(body)") -> dict[str, Any]:
    return {
        "customerIndex": None,
        "sourceCustomerId": None,
        "field": field_name,
        "message": message,
    }


def _redirect(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def _card_values(customer: Any) -> dict[str, Any]:
    """postalCode, last4 and iin found anywhere in one customer document (for echoing)."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("postalCode", "last4", "iin"):
                    found.setdefault(key, value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(customer)
    return found


def _count_customers(body: bytes) -> int | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    customers = parsed.get("customers") if isinstance(parsed, dict) else None
    return len(customers) if isinstance(customers, list) else None


def _drop(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)  # never reaches the client: the connection is gone


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


# --- running it ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def run_stub_server(
    faults: StubFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> AsyncIterator[StubPartner]:
    """Serve a ``StubPartner`` in the running loop; ``options`` go to ``StubPartner``."""
    stub = StubPartner(faults, **options)
    await stub.start(host, port)
    try:
        yield stub
    finally:
        await stub.stop()


@contextlib.contextmanager
def serve_stub_in_thread(
    faults: StubFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[StubPartner]:
    """Serve a ``StubPartner`` from a background thread with its own event loop."""
    stub = StubPartner(faults, **options)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()

    async def serve() -> None:
        try:
            await stub.start(host, port)
        except BaseException as error:
            failure.append(error)
            ready.set()
            return
        ready.set()
        try:
            await stopped.wait()
        finally:
            await stub.stop()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="stub-partner", daemon=True
    )
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield stub
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        loop.close()


@dataclass(frozen=True)
class RemoteStub:
    """A stand-in server running in another process: its URL and its admin endpoints."""

    url: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=10) as answer:  # noqa: S310
            result: dict[str, Any] = json.load(answer)
        return result

    def expire_tokens(self) -> None:
        request = urllib.request.Request(self.url + EXPIRE_TOKENS_PATH, method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


def fault_arguments(faults: StubFaults) -> list[str]:
    """The stand-in's command-line flags (``customer-sync stub-api``) that reproduce ``faults``."""
    arguments = [
        f"--latency={faults.latency}",
        f"--fail-share={faults.error_share}",
        f"--rate-limit-share={faults.rate_limit_share}",
        f"--retry-after={faults.retry_after}",
        f"--drop-share={faults.drop_share}",
        f"--token-lifetime={faults.token_lifetime}",
    ]
    arguments += [f"--reject-id={customer_id}" for customer_id in sorted(faults.reject_ids)]
    arguments += [f"--ok-with-errors-id={cid}" for cid in sorted(faults.ok_with_errors_ids)]
    arguments += [f"--redirect-to={faults.redirect_to}"] if faults.redirect_to else []
    arguments += (
        [f"--redirect-session-to={faults.redirect_session_to}"]
        if faults.redirect_session_to
        else []
    )
    arguments += [f"--redirect-status={faults.redirect_status}"]
    arguments += ["--anonymous-errors"] if faults.anonymous_errors else []
    arguments += ["--echo-errors"] if faults.echo_errors else []
    arguments += ["--expiry-as-500"] if faults.expiry_as_500 else []
    arguments += ["--jwt-tokens"] if faults.jwt_tokens else []
    return arguments


@contextlib.contextmanager
def serve_stub_in_subprocess(
    faults: StubFaults | None = None,
    *,
    port: int = 0,
    validate: bool = True,
    keep_documents: bool = False,
    startup_timeout: float = 30.0,
) -> Iterator[RemoteStub]:
    """Run the stand-in server in its own process (no GIL shared with the client): the
    ``customer-sync stub-api`` command, whose options are the one declaration of them."""
    command = [sys.executable, "-m", "customer_sync.cli.app", "stub-api", f"--port={port}"]
    command += fault_arguments(faults or StubFaults())
    command += [] if validate else ["--no-validate"]
    command += ["--keep-documents"] if keep_documents else []
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE)
    try:
        line = _read_line(process, startup_timeout).decode()
        announced = re.search(r"\bon (http://\S+)", line)
        if announced is None:
            raise RuntimeError(f"the stand-in server said {line!r}, not where it listens")
        yield RemoteStub(announced.group(1), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(f"the stand-in server did not start (exit status {process.poll()})")
    return result[0]


def faults_from_args(args: argparse.Namespace) -> StubFaults:
    """``StubFaults`` from the stand-in's options (declared once, in
    ``customer_sync/cli/stand_in.py``, for ``stub-api`` and ``demo``)."""
    return StubFaults(
        error_share=args.fail_share,
        rate_limit_share=args.rate_limit_share,
        retry_after=args.retry_after,
        latency=args.latency,
        drop_share=args.drop_share,
        token_lifetime=args.token_lifetime,
        reject_ids=frozenset(args.reject_id),
        anonymous_errors=args.anonymous_errors,
        redirect_to=args.redirect_to,
        redirect_status=args.redirect_status,
        redirect_session_to=args.redirect_session_to,
        echo_errors=args.echo_errors,
        ok_with_errors_ids=frozenset(args.ok_with_errors_id),
        expiry_as_500=args.expiry_as_500,
        jwt_tokens=args.jwt_tokens,
        seed=None,
    )


async def serve_until_stopped(
    stub: StubPartner, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Serve until SIGINT or SIGTERM."""
    await stub.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    announce(stub.url)
    try:
        await stop.wait()
    finally:
        await stub.stop()
