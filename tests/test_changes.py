"""The parts of a document and what changed between two of them (pure, tiny documents)."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from customer_sync.transforms.changes import (
    NO_EARLIER_PARTS,
    SENSITIVE_CHANGE,
    part_changes,
    parts_json,
    parts_of,
    read_parts,
)


def _card(
    holder: str = "C1", status: str = "OPEN", last4: str = "1234", **kw: Any
) -> dict[str, Any]:
    return {"sourceAccountId": "A1", "sourceCustomerId": holder, "last4": last4, "iin": "411111",
            "cardType": "CREDIT", "status": status, "networkIdentifier": 4,
            "openDate": "2024-01-01T00:00:00Z", "closeDate": None, **kw}  # fmt: skip


def _document() -> dict[str, Any]:
    return {
        "sourceCustomerId": "C1", "organizationId": "50004", "postalCode": "02134",
        "country": "US", "customerCreationDate": "2020-01-01T00:00:00Z",
        "enrollmentStartDate": "2020-01-01T00:00:00Z", "enrollmentEndDate": None,
        "enrollmentOptInStatus": "ACTIVE", "alertOptInStatus": ["ALL"],
        "targetingIndicator": "TARGET",
        "accounts": [{
            "sourceAccountId": "A1", "sourceCustomerIds": ["C1"], "primarySourceCustomerId": "C1",
            "status": "OPEN", "type": "CRD", "sourcePortfolioId": "P1",
            "accountOpenDate": "2020-01-01T00:00:00Z", "accountCloseDate": None,
            "cards": [_card()],
        }],
    }  # fmt: skip


def test_parts_keep_no_postal_code_last4_or_iin() -> None:
    stored = parts_json(orjson.dumps(_document()))
    assert b"02134" not in stored and b"1234" not in stored and b"411111" not in stored
    assert b"postalCode" not in stored and b"last4" not in stored and b"iin" not in stored
    assert read_parts(stored) == parts_of(_document())


def test_the_same_document_has_no_changes() -> None:
    assert (
        part_changes(parts_of(_document()), parts_of(_document()), fingerprint_changed=False) == []
    )


def test_a_closed_account_says_status_and_close_date_old_to_new() -> None:
    new = _document()
    new["accounts"][0]["status"] = "CLOSED"
    new["accounts"][0]["accountCloseDate"] = "2026-11-30T00:00:00Z"
    assert part_changes(parts_of(_document()), parts_of(new)) == [
        "account A1: status OPEN→CLOSED",
        "account A1: accountCloseDate null→2026-11-30T00:00:00Z",
    ]


def test_a_closed_card_is_named_by_account_holder_and_open_date_never_by_number() -> None:
    new = _document()
    new["accounts"][0]["cards"][0].update(status="CLOSED", closeDate="2026-11-30T00:00:00Z")
    (line,) = part_changes(parts_of(_document()), parts_of(new))
    assert line == "card under account A1 (holder C1, opened 2024-01-01T00:00:00Z): closed"


def test_added_and_removed_cards_and_accounts() -> None:
    new = _document()
    new["accounts"][0]["cards"].append(_card(holder="C1", openDate="2025-05-05T00:00:00Z"))
    extra = copy.deepcopy(new["accounts"][0])
    extra.update(sourceAccountId="A2", cards=[])
    new["accounts"].append(extra)
    lines = part_changes(parts_of(_document()), parts_of(new))
    assert lines == [
        "account A2: added",
        "card under account A1 (holder C1, opened 2025-05-05T00:00:00Z): added",
    ]
    assert part_changes(parts_of(new), parts_of(_document())) == [
        "account A2: left the tree",
        "card under account A1 (holder C1, opened 2025-05-05T00:00:00Z): left the tree",
    ]


def test_a_changed_card_type_is_changed_without_values() -> None:
    new = _document()
    new["accounts"][0]["cards"][0]["networkIdentifier"] = 5
    assert part_changes(parts_of(_document()), parts_of(new)) == [
        "card under account A1 (holder C1, opened 2024-01-01T00:00:00Z): changed"
    ]


def test_customer_fields_old_to_new_a_postal_code_only_as_sensitive() -> None:
    new = _document()
    new["enrollmentOptInStatus"] = "INACTIVE"
    new["alertOptInStatus"] = ["NEW", "EXPIRING"]
    assert part_changes(parts_of(_document()), parts_of(new)) == [
        "customer enrollmentOptInStatus: ACTIVE→INACTIVE",
        "customer alertOptInStatus: [ALL]→[NEW,EXPIRING]",
    ]
    moved = _document()
    moved["postalCode"] = "99999"
    moved["accounts"][0]["cards"][0]["last4"] = "9999"
    assert parts_of(moved) == parts_of(_document())
    assert part_changes(parts_of(_document()), parts_of(moved)) == [SENSITIVE_CHANGE]
    assert "99999" not in SENSITIVE_CHANGE and "9999" not in SENSITIVE_CHANGE


def test_unknown_earlier_parts() -> None:
    assert part_changes(None, parts_of(_document())) == [NO_EARLIER_PARTS]
    assert read_parts(None) is None
    assert read_parts(b'{"v": 0}') is None  # another version reads as unknown
