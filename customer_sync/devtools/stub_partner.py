"""The stand-in partner: ``StubPartner``, an aiohttp application plus what it recorded
(lifecycle, sessions and auth here; the data endpoint in ``devtools/stub_customers.py``)."""

from __future__ import annotations

import base64
import hmac
import logging
import random
import secrets
import socket
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from customer_sync.adapters.partner_client import is_loopback
from customer_sync.devtools.stub_answers import (
    body_error,
    count_customers,
    problem_answer,
    redirect_answer,
)
from customer_sync.devtools.stub_customers import CustomerRequests
from customer_sync.devtools.stub_faults import StubFaults
from customer_sync.devtools.stub_in_flight import InFlightMeter
from customer_sync.devtools.stub_records import (
    EXPIRE_TOKENS_PATH,
    MAX_BODY_BYTES,
    MOVED_PREFIX,
    SESSION_EXPIRED_TYPE,
    STATS_PATH,
    AcceptedCustomer,
    StubCounters,
    StubRequest,
)
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError

logger = logging.getLogger(__name__)


class StubPartner(CustomerRequests):
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
            self._record(request, request_id, count_customers(body), 500)
            answer = problem_answer(500, "Session is not valid", request_id)
            payload = orjson.loads(answer.body)  # type: ignore[arg-type]
            answer.body = orjson.dumps({**payload, "type": SESSION_EXPIRED_TYPE})
            return answer
        self._record(request, request_id, count_customers(body), 401)
        return problem_answer(401, "Unauthorized", request_id)

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
            return redirect_answer(self.faults.redirect_status, self.faults.redirect_session_to)
        if request.content_type != "application/json":
            return problem_answer(415, "Unsupported Media Type", request_id)
        try:
            parsed = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return problem_answer(400, "Bad Request", request_id, [body_error("unreadable JSON")])
        scopes = parsed.get("scopes") if isinstance(parsed, dict) else None
        if (
            not isinstance(scopes, list)
            or set(parsed) != {"scopes"}
            or not set(contract.SESSION_SCOPES) <= set(scopes)
        ):
            message = f"body must be {{'scopes': {list(contract.SESSION_SCOPES)}}}"
            return problem_answer(400, "Bad Request", request_id, [body_error(message, "scopes")])
        token = self._new_token()
        self._generation += 1
        self._tokens[token] = (self._generation, self._clock())
        self.counters.sessions_started += 1
        return web.Response(
            body=orjson.dumps({"sessionToken": token}), content_type="application/json"
        )

    # --- data ----------------------------------------------------------------------------
    # --- the rest ------------------------------------------------------------------------
    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _expire(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return web.json_response({"expired": True})

    async def _method_not_allowed(self, request: web.Request) -> web.Response:
        return problem_answer(
            405, "Method Not Allowed", request.headers.get(contract.REQUEST_ID_HEADER)
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        return problem_answer(404, "Not Found", request.headers.get(contract.REQUEST_ID_HEADER))
