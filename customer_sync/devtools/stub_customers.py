"""The stand-in partner's data endpoint: how one ``/v2/data/customers`` request is
answered (auth, injected faults, echo and 200-with-errors modes, validation, acceptance).

A mixin of ``StubPartner`` (``devtools/stub_partner.py``), which holds the state it reads.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import deque
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import ValidationError

from customer_sync.devtools.stub_answers import (
    EVERYONE,
    body_error,
    card_values,
    count_customers,
    drop_connection,
    problem_answer,
    problem_item,
    redirect_answer,
    seconds_text,
    validation_errors,
)
from customer_sync.devtools.stub_faults import StubFaults
from customer_sync.devtools.stub_records import AcceptedCustomer, Fault, StubCounters, StubRequest
from customer_sync.schemas import contract
from customer_sync.schemas.document import CustomersRequest, request_problems
from customer_sync.schemas.records import request_body


class CustomerRequests:
    """Answers data requests; the state is ``StubPartner``'s."""

    faults: StubFaults
    counters: StubCounters
    accepted: dict[str, AcceptedCustomer]
    requests: deque[StubRequest]
    validate: bool
    keep_documents: bool
    puts_need_create: bool
    _rng: random.Random
    _seen_bodies: dict[int, int]

    def _authorised(self, request: web.Request) -> bool:
        raise NotImplementedError

    def _unauthorised(self, request: web.Request, request_id: str, body: bytes) -> web.Response:
        raise NotImplementedError

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
        return drop_connection(request) if answer is None else answer

    def _answer(self, request: web.Request, body: bytes) -> web.Response | None:
        """The answer to one data request, or None for a dropped connection."""
        self.counters.requests += 1
        request_id = request.headers.get(contract.REQUEST_ID_HEADER) or str(uuid.uuid4())
        # the partner's order: who is asking, then what goes wrong, then what was sent
        if not self._authorised(request):
            return self._unauthorised(request, request_id, body)
        faults = self.faults
        if faults.redirect_to is not None and request.path == contract.CUSTOMERS_PATH:
            self._record(request, request_id, count_customers(body), faults.redirect_status)
            return redirect_answer(faults.redirect_status, faults.redirect_to)
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
            return problem_answer(415, "Unsupported Media Type", request_id)
        return self._accept(request, request_id, body, drop_after=fault == "drop")

    def _inject(
        self, request: web.Request, request_id: str, body: bytes, fault: Fault
    ) -> web.Response | None:
        count = count_customers(body)
        if fault == "drop":
            self.counters.dropped += 1
            self._record(request, request_id, count, "dropped")
            return None
        headers = None
        if fault == 429:
            self.counters.rate_limited += 1
            headers = {"Retry-After": seconds_text(self.faults.retry_after)}
        else:
            self.counters.injected_errors += 1
        self._record(request, request_id, count, fault)
        return problem_answer(fault, "Injected fault", request_id, headers=headers)

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
            values = card_values(customer)
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
                request, request_id, request_body([orjson.dumps(c) for c in rest]), drop_after=False
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
        return problem_answer(400, "Validation failed", request_id, errors)

    def _accept(
        self, request: web.Request, request_id: str, body: bytes, *, drop_after: bool
    ) -> web.Response | None:
        parsed: Any = None
        if self.validate:
            try:
                valid = CustomersRequest.model_validate_json(body)
            except ValidationError as error:
                errors = validation_errors(error, body)
                return self._bad_request(request, request_id, count_customers(body), errors)
            ids = [customer.sourceCustomerId for customer in valid.customers]
            created = self.accepted if self.puts_need_create else EVERYONE
            problems = request_problems(valid, request.method, created)
            if problems:
                return self._bad_request(
                    request, request_id, len(ids), [problem_item(p) for p in problems]
                )
        else:
            try:
                parsed = orjson.loads(body)
                ids = [customer["sourceCustomerId"] for customer in parsed["customers"]]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return self._bad_request(request, request_id, None, [body_error("unreadable")])
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
