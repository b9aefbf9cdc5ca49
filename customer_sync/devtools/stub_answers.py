"""The stand-in partner's answers: problem documents, validation errors, redirects and
dropped connections, as the partner shapes them (docs/partner-contract.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from customer_sync.devtools.stub_records import MAX_VALIDATION_ERRORS
from customer_sync.schemas.document import RequestProblem


def problem_answer(
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


def dotted(loc: Sequence[int | str]) -> str:
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
        field_path = dotted(loc[2:]) if isinstance(index, int) else dotted(loc)
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


class Everyone:
    """A container holding every customer id: no PUT is of an unknown customer."""

    def __contains__(self, item: object) -> bool:
        return True


EVERYONE = Everyone()


def problem_item(problem: RequestProblem) -> dict[str, Any]:
    """A request-level problem as a partner-style ``validationErrors`` item."""
    return {
        "customerIndex": problem.index,
        "sourceCustomerId": problem.customer_id,
        "field": problem.field,
        "message": problem.message,
    }


def body_error(message: str, field_name: str = "(body)") -> dict[str, Any]:
    return {
        "customerIndex": None,
        "sourceCustomerId": None,
        "field": field_name,
        "message": message,
    }


def redirect_answer(status: int, location: str) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


def card_values(customer: Any) -> dict[str, Any]:
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


def count_customers(body: bytes) -> int | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    customers = parsed.get("customers") if isinstance(parsed, dict) else None
    return len(customers) if isinstance(customers, list) else None


def drop_connection(request: web.Request) -> web.StreamResponse:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)  # never reaches the client: the connection is gone


def seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
