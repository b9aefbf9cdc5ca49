"""The reference nest: normalised frames -> the partner's Customer documents."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pandas as pd
import pytest

from customer_sync.schemas import contract
from customer_sync.schemas.document import CustomerDocument
from customer_sync.transforms import nest
from customer_sync.transforms.nest import serialise_document
from tests.normalised_factory import (
    DATE,
    LATER,
    account,
    card,
    customer,
    frame,
    frames,
    household,
)


def customer_documents(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> list[Any]:
    """The reference, its documents typed loosely so tests can reach into them."""
    return nest.customer_documents(customers, accounts, cards)


def _by_id(documents: list[Any]) -> dict[str, Any]:
    return {document["sourceCustomerId"]: document for document in documents}


def test_fields_are_in_the_partners_order() -> None:
    documents = customer_documents(
        *frames(
            [customer("c1", sourceParentCustomerId="p1")],
            [account("a1", "c1")],
            [card("a1", "c1")],
        )
    )

    (document,) = documents
    # redemptionEligibility is left out when the extract has none (the optional column)
    assert tuple(document) == tuple(
        f for f in contract.CUSTOMER_FIELDS if f != "redemptionEligibility"
    )
    (account_document,) = document["accounts"]
    assert tuple(account_document) == contract.ACCOUNT_FIELDS
    (card_document,) = account_document["cards"]
    assert tuple(card_document) == contract.CARD_FIELDS


def test_values_go_out_as_the_partner_wants_them() -> None:
    documents = customer_documents(
        *frames(
            [customer("c1", alertOptInStatus="ALL|NEW", postalCode="00123")],
            [account("a1", "c1")],
            [card("a1", "c1", networkIdentifier=5, last4="0007")],
        )
    )

    assert documents == [
        {
            "sourceCustomerId": "c1",
            "organizationId": "50004",
            "postalCode": "00123",
            "country": "US",
            "customerCreationDate": DATE,
            "enrollmentStartDate": DATE,
            "enrollmentEndDate": None,
            "enrollmentOptInStatus": "ACTIVE",
            "alertOptInStatus": ["ALL", "NEW"],
            "targetingIndicator": "TARGET",
            "accounts": [
                {
                    "sourceAccountId": "a1",
                    "sourceCustomerIds": ["c1"],
                    "primarySourceCustomerId": "c1",
                    "status": "OPEN",
                    "type": "CRD",
                    "sourcePortfolioId": "PF-1",
                    "accountOpenDate": DATE,
                    "accountCloseDate": None,
                    "cards": [
                        {
                            "sourceAccountId": "a1",
                            "sourceCustomerId": "c1",
                            "last4": "0007",
                            "iin": "412345",
                            "cardType": "CREDIT",
                            "status": "OPEN",
                            "networkIdentifier": 5,
                            "openDate": DATE,
                            "closeDate": None,
                        }
                    ],
                }
            ],
        }
    ]


def test_network_identifier_is_a_python_int_and_a_json_number() -> None:
    (document,) = customer_documents(
        *frames([customer("c1")], [account("a1", "c1")], [card("a1", "c1")])
    )

    network = document["accounts"][0]["cards"][0]["networkIdentifier"]
    assert type(network) is int
    assert b'"networkIdentifier":4,' in serialise_document(document)


def test_missing_values_are_null_and_dates_pass_through() -> None:
    (document,) = customer_documents(
        *frames(
            [customer("c1", enrollmentEndDate=LATER, country=None)],
            [account("a1", "c1", status="CLOSED", accountCloseDate=LATER)],
            [card("a1", "c1", closeDate=None)],
        )
    )

    assert document["enrollmentEndDate"] == LATER
    assert document["country"] is None
    account_document = document["accounts"][0]
    assert account_document["accountCloseDate"] == LATER
    assert account_document["cards"][0]["closeDate"] is None
    assert b'"closeDate":null}' in serialise_document(document)


@pytest.mark.parametrize("parent", [None, ""])
def test_parent_id_is_left_out_when_missing_or_empty(parent: str | None) -> None:
    (document,) = customer_documents(*frames([customer("c1", sourceParentCustomerId=parent)]))

    assert "sourceParentCustomerId" not in document


def test_parent_id_is_left_out_when_the_column_is_absent() -> None:
    customers, accounts, cards = frames([customer("c1", sourceParentCustomerId="p1")])

    (document,) = customer_documents(
        customers.drop(columns="sourceParentCustomerId"), accounts, cards
    )

    assert "sourceParentCustomerId" not in document


def test_parent_id_is_sent_second_when_present() -> None:
    (document,) = customer_documents(*frames([customer("c1", sourceParentCustomerId="p1")]))

    assert list(document)[:2] == ["sourceCustomerId", "sourceParentCustomerId"]
    assert document["sourceParentCustomerId"] == "p1"


def test_empty_optional_dates_are_null() -> None:
    (document,) = customer_documents(
        *frames([customer("c1", enrollmentEndDate="")], [account("a1", "c1")], [card("a1", "c1")])
    )

    assert document["enrollmentEndDate"] is None


def test_absent_optional_columns_are_null_or_the_primary_holder() -> None:
    customers, accounts, cards = frames(
        [customer("c1")], [account("a1", "c1", sourceCustomerIds="c1|c2")], [card("a1", "c1")]
    )

    (document,) = customer_documents(
        customers.drop(columns="enrollmentEndDate"),
        accounts.drop(columns=["sourceCustomerIds", "accountCloseDate"]),
        cards.drop(columns="closeDate"),
    )

    assert document["enrollmentEndDate"] is None
    account_document = document["accounts"][0]
    assert account_document["sourceCustomerIds"] == ["c1"]
    assert account_document["accountCloseDate"] is None
    assert account_document["cards"][0]["closeDate"] is None


@pytest.mark.parametrize("holders", [None, ""])
def test_no_listed_holders_means_the_primary_alone(holders: str | None) -> None:
    (document,) = customer_documents(
        *frames([customer("c1")], [account("a1", "c1", sourceCustomerIds=holders)])
    )

    assert document["accounts"][0]["sourceCustomerIds"] == ["c1"]


def test_none_is_an_empty_list() -> None:
    documents = customer_documents(
        *frames(
            [customer("c1", alertOptInStatus=""), customer("c2", alertOptInStatus=None)],
            [account("a1", "c1")],
        )
    )

    c1, c2 = documents
    assert c1["alertOptInStatus"] == []
    assert c2["alertOptInStatus"] == []
    assert c1["accounts"][0]["cards"] == []
    assert c2["accounts"] == []
    assert serialise_document(c2).endswith(b'"accounts":[]}')


def test_joint_account_is_identical_under_every_holder_present() -> None:
    documents = _by_id(customer_documents(*household()))

    joint_c1 = [a for a in documents["c1"]["accounts"] if a["sourceAccountId"] == "a-joint"]
    joint_c2 = documents["c2"]["accounts"]
    assert joint_c1 == joint_c2
    (joint,) = joint_c2
    assert joint["sourceCustomerIds"] == ["c1", "c2", "c9"]
    assert [c["last4"] for c in joint["cards"]] == ["0002", "0001"]


def test_holder_missing_from_the_extract_gets_no_document() -> None:
    customers, accounts, cards = household()

    documents = customer_documents(customers, accounts, cards)

    assert [d["sourceCustomerId"] for d in documents] == ["c1", "c2", "c3"]


def test_a_holder_listed_twice_gets_the_account_once() -> None:
    (document,) = customer_documents(
        *frames([customer("c1")], [account("a1", "c1", sourceCustomerIds="c1|c1")])
    )

    assert len(document["accounts"]) == 1


def test_order_follows_the_frames_not_the_ids() -> None:
    documents = customer_documents(
        *frames(
            [customer("z"), customer("a"), customer("m")],
            [account("a2", "a"), account("a9", "a", "z"), account("a1", "a")],
            [card("a9", "a", last4="0003"), card("a9", "z", last4="0001"), card("a9", "a")],
        )
    )

    assert [d["sourceCustomerId"] for d in documents] == ["z", "a", "m"]
    accounts_of_a = documents[1]["accounts"]
    assert [a["sourceAccountId"] for a in accounts_of_a] == ["a2", "a9", "a1"]
    cards_of_a9 = accounts_of_a[1]["cards"]
    assert [c["last4"] for c in cards_of_a9] == ["0003", "0001", "0042"]


def test_row_number_and_extra_columns_are_ignored() -> None:
    (document,) = customer_documents(
        *frames([customer("c1", note="internal")], [account("a1", "c1", x="y")])
    )

    assert "_row" not in document
    assert "note" not in document
    assert "x" not in document["accounts"][0]


def test_inputs_are_not_mutated() -> None:
    inputs = household()
    before = copy.deepcopy(inputs)

    customer_documents(*inputs)

    for after, original in zip(inputs, before, strict=True):
        pd.testing.assert_frame_equal(after, original)


def test_documents_share_nothing() -> None:
    documents = _by_id(customer_documents(*household()))
    joint_c2 = documents["c2"]["accounts"][0]

    joint_c2["cards"][0]["last4"] = "9999"
    joint_c2["sourceCustomerIds"].append("c7")

    joint_c1 = documents["c1"]["accounts"][1]
    assert joint_c1["cards"][0]["last4"] == "0002"
    assert joint_c1["sourceCustomerIds"] == ["c1", "c2", "c9"]


def test_no_customers_no_documents() -> None:
    assert customer_documents(*frames()) == []


def test_a_required_column_that_is_absent_is_named() -> None:
    customers, accounts, cards = frames([customer("c1")])

    with pytest.raises(ValueError, match="'organizationId'"):
        customer_documents(customers.drop(columns="organizationId"), accounts, cards)


def test_a_network_identifier_that_is_not_an_integer_is_refused() -> None:
    cards = frame("cards", [card("a1", "c1")]).astype({"networkIdentifier": "str"})

    with pytest.raises(TypeError, match="networkIdentifier"):
        customer_documents(*frames([customer("c1")], [account("a1", "c1")])[:2], cards)


def test_serialise_document_is_compact_orjson() -> None:
    document: dict[str, object] = {"a": "é\n", "b": [1, None]}

    assert serialise_document(document) == orjson.dumps(document)
    assert serialise_document(document) == b'{"a":"\xc3\xa9\\n","b":[1,null]}'


def test_documents_satisfy_the_outgoing_schema() -> None:
    documents = customer_documents(
        *frames(
            [
                customer("c1", sourceParentCustomerId="p1", alertOptInStatus="ALL|NEW"),
                customer("c2", enrollmentEndDate=LATER, alertOptInStatus=""),
                customer("c3"),
                customer("c4"),
            ],
            [
                account("a-own-1", "c1"),
                account("a-joint", "c1", "c2", "c9"),
                account("a-closed", "c3", status="CLOSED", accountCloseDate=LATER),
            ],
            [
                card("a-joint", "c2"),
                card("a-joint", "c1", networkIdentifier=3),
                card("a-closed", "c3", status="CLOSED", closeDate=LATER),
            ],
        )
    )

    assert len(documents) == 4
    for document in documents:
        CustomerDocument.model_validate_json(serialise_document(document))


def test_redemption_eligibility_is_sent_only_where_the_extract_has_one() -> None:
    given, empty, missing = customer_documents(
        *frames(
            [
                customer("c1", sourceParentCustomerId="p1", redemptionEligibility="NONE"),
                customer("c2", redemptionEligibility=""),
                customer("c3"),
            ],
        )
    )
    assert tuple(given) == contract.CUSTOMER_FIELDS
    assert given["redemptionEligibility"] == "NONE"
    assert "redemptionEligibility" not in empty
    assert "redemptionEligibility" not in missing
    without_column = frames([customer("c3")])[0].drop(columns=["redemptionEligibility"])
    (absent,) = customer_documents(without_column, *frames()[1:])
    assert absent == missing
