"""The stand-in partner refuses, over real HTTP, what validation refuses (and nothing more).

One test per rule that used to differ between ``schemas.extracts`` and the stand-in: each
sends a request that breaks it and expects a 400 whose ``validationErrors`` name the
customer, and nothing accepted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from customer_sync.schemas import contract
from tests.document_factory import customer, request_body
from tests.test_stub_server import Api, _api


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async for value in _api():
        yield value


async def _refused(api: Api, documents: list[dict[str, Any]], method: str = "POST") -> list[Any]:
    status, body = await api.call(method, contract.CUSTOMERS_PATH, request_body(documents))
    assert status == 400, body
    assert api.stub.counters.accepted_requests == 0 or method == "PUT"
    errors: list[Any] = body["validationErrors"]
    return errors


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customerCreationDate": "2023-02-30T08:00:00Z"}, "customerCreationDate"),
        ({"enrollmentStartDate": "2023-01-01T08:00:60Z"}, "enrollmentStartDate"),
        ({"country": "ZZ"}, "country"),
        ({"postalCode": "9" * 21}, "postalCode"),
        ({"postalCode": "787\x0053"}, "postalCode"),
        ({"sourceCustomerId": "C1\n"}, "sourceCustomerId"),
        ({"organizationId": "50\r004"}, "organizationId"),
        ({"redemptionEligibility": "SOME"}, "redemptionEligibility"),
    ],
)
async def test_refuses_what_validation_refuses(
    api: Api, overrides: dict[str, Any], field: str
) -> None:
    errors = await _refused(api, [customer("C0"), customer("C1") | overrides])
    assert [(e["customerIndex"], e["field"]) for e in errors] == [(1, field)]
    assert "787" not in str(errors) and "\x00" not in str(errors)  # no value echoed
    assert api.stub.accepted == {}


async def test_refuses_a_customer_twice_in_one_request(api: Api) -> None:
    errors = await _refused(api, [customer("C1"), customer("C2"), customer("C1")])
    assert [(e["customerIndex"], e["sourceCustomerId"]) for e in errors] == [(2, "C1")]
    assert "already customers[0]" in errors[0]["message"]
    assert api.stub.accepted == {}


async def test_refuses_a_put_of_a_customer_never_created(api: Api) -> None:
    status, _ = await api.customers([customer("C1")])
    assert status == 200
    errors = await _refused(api, [customer("C1"), customer("NEW")], method="PUT")
    assert [(e["customerIndex"], e["sourceCustomerId"]) for e in errors] == [(1, "NEW")]
    assert "customer not found" in errors[0]["message"]
    assert api.stub.accepted["C1"].times == 1  # nothing of the refused request was kept
    status, _ = await api.call(
        "PUT", contract.CUSTOMERS_PATH, request_body([customer("C1", postalCode="99999")])
    )
    assert status == 200
    assert api.stub.accepted["C1"].method == "PUT"


async def test_a_stand_in_told_so_accepts_puts_of_unknown_customers() -> None:
    async for api in _api(puts_need_create=False):
        status, _ = await api.call("PUT", contract.CUSTOMERS_PATH, request_body([customer("C1")]))
        assert status == 200


async def test_accepts_what_validation_accepts(api: Api) -> None:
    documents = [
        customer(
            "C1", postalCode="9" * 20, country="GB", customerCreationDate="2024-02-29T00:00:00Z"
        ),
        customer("C2", redemptionEligibility="NONE", postalCode="78753"),
        customer("C3", sourceCustomerId="C3", organizationId="AFFINA\x7f"),
    ]
    documents[0]["accounts"][0]["sourcePortfolioId"] = "P" * 120
    status, body = await api.customers(documents)
    assert status == 200, body
