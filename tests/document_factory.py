"""Tiny valid Customer documents and batches for tests (not a fixture module)."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from customer_sync.schemas.records import Batch, Method
from customer_sync.transforms.batching import make_batches

DATE = "2024-01-02T03:04:05Z"


def card(account_id: str, customer_id: str, **overrides: Any) -> dict[str, Any]:
    document = {
        "sourceAccountId": account_id,
        "sourceCustomerId": customer_id,
        "last4": "0042",
        "iin": "412345",
        "cardType": "CREDIT",
        "status": "OPEN",
        "networkIdentifier": 4,
        "openDate": DATE,
        "closeDate": None,
    }
    document.update(overrides)
    return document


def account(
    account_id: str, holders: list[str], *, cards: int = 1, **overrides: Any
) -> dict[str, Any]:
    document = {
        "sourceAccountId": account_id,
        "sourceCustomerIds": list(holders),
        "primarySourceCustomerId": holders[0],
        "status": "OPEN",
        "type": "CRD",
        "sourcePortfolioId": "PF-1",
        "accountOpenDate": DATE,
        "accountCloseDate": None,
        # a card once per holder and last4 (the partner's, and validation's, card key)
        "cards": [
            card(account_id, holders[n % len(holders)], **({"last4": f"{n:04d}"} if n else {}))
            for n in range(cards)
        ],
    }
    document.update(overrides)
    return document


def customer(
    customer_id: str, *, accounts: int = 1, cards: int = 1, **overrides: Any
) -> dict[str, Any]:
    """A valid customer with ``accounts`` accounts of ``cards`` cards each."""
    document = {
        "sourceCustomerId": customer_id,
        "sourceParentCustomerId": "PARENT-1",
        "organizationId": "50004",
        "postalCode": "01234",
        "country": "US",
        "customerCreationDate": DATE,
        "enrollmentStartDate": DATE,
        "enrollmentEndDate": None,
        "enrollmentOptInStatus": "ACTIVE",
        "alertOptInStatus": ["ALL"],
        "targetingIndicator": "TARGET",
        "accounts": [
            account(f"{customer_id}-A{n}", [customer_id], cards=cards) for n in range(accounts)
        ],
    }
    document.update(overrides)
    return document


def customer_ids(count: int, prefix: str = "C") -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


def batches(
    count: int,
    *,
    batch_size: int = 50,
    method: Method = "POST",
    prefix: str = "C",
    broken: dict[str, dict[str, Any]] | None = None,
    id_prefix: str = "run1",
) -> list[Batch]:
    """``count`` customers in batches; ``broken`` overrides fields of chosen customers."""
    ids = customer_ids(count, prefix)
    documents = []
    for customer_id in ids:
        document = customer(customer_id)
        if broken and customer_id in broken:
            document = {**copy.deepcopy(document), **broken[customer_id]}
        documents.append(orjson.dumps(document))
    return list(make_batches(ids, documents, method, batch_size, id_prefix=id_prefix))


def request_body(documents: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"customers": documents})
