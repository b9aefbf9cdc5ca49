"""The outgoing document schema: a passing and a failing case for every rule."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from customer_sync.schemas.document import (
    AccountDocument,
    CardDocument,
    CustomerDocument,
    CustomersRequest,
)
from tests.document_factory import DATE, account, card, customer, request_body


def _json(document: Any) -> bytes:
    return orjson.dumps(document)


def test_factory_documents_are_valid() -> None:
    CustomerDocument.model_validate_json(_json(customer("C1", accounts=2, cards=3)))
    CustomerDocument.model_validate_json(_json(customer("C1", accounts=0)))


def test_joint_account_with_cards_of_both_holders_is_valid() -> None:
    joint = account("A1", ["C1", "C2"], cards=2)
    assert {c["sourceCustomerId"] for c in joint["cards"]} == {"C1", "C2"}
    for holder in ("C1", "C2"):
        CustomerDocument.model_validate_json(
            _json(customer(holder, accounts=0) | {"accounts": [joint]})
        )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"networkIdentifier": "4"}, "valid integer"),
        ({"networkIdentifier": 4.0}, "valid integer"),
        ({"networkIdentifier": True}, "valid integer"),
        ({"networkIdentifier": 7}, "less than or equal to 6"),
        ({"networkIdentifier": 2}, "greater than or equal to 3"),
        ({"last4": "123"}, "pattern"),
        ({"last4": 1234}, "valid string"),
        ({"last4": "١٢٣٤"}, "pattern"),  # Arabic-Indic digits are not [0-9]
        ({"iin": "1234567"}, "pattern"),
        ({"cardType": "CHARGE"}, "'CREDIT', 'DEBIT' or 'PREPAID'"),
        ({"status": "FRAUD"}, "'OPEN' or 'CLOSED'"),
        ({"openDate": "2024-01-02"}, "pattern"),
        ({"openDate": "2024-01-02T03:04:05.123Z"}, "pattern"),
        ({"openDate": "2024-01-02T03:04:05+00:00"}, "pattern"),
        ({"openDate": "2024-13-02T03:04:05Z"}, "pattern"),
        ({"openDate": ""}, "pattern"),
        ({"closeDate": DATE}, "closeDate must be null unless status is CLOSED"),
        ({"status": "CLOSED"}, "closeDate is required when status is CLOSED"),
        ({"sourceAccountId": 12}, "valid string"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_card_rules(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        CardDocument.model_validate_json(_json(card("A1", "C1") | overrides))


def test_card_iin_of_eight_digits_and_closed_card_pass() -> None:
    CardDocument.model_validate_json(_json(card("A1", "C1", iin="41234567")))
    CardDocument.model_validate_json(_json(card("A1", "C1", status="CLOSED", closeDate=DATE)))


def test_card_without_optional_close_date_passes() -> None:
    document = card("A1", "C1")
    del document["closeDate"]
    CardDocument.model_validate_json(_json(document))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"primarySourceCustomerId": "C9"}, "primarySourceCustomerId must be one of"),
        ({"sourceCustomerIds": []}, "at least 1 item"),
        ({"status": "SUSPENDED"}, "'OPEN', 'CLOSED', 'DISPUTE' or 'FRAUD'"),
        ({"type": "XYZ"}, "Input should be 'PPD'"),
        ({"sourcePortfolioId": "P" * 121}, "at most 120 characters"),
        ({"sourcePortfolioId": "P\x00"}, "should match pattern"),
        ({"sourceAccountId": "A\nB"}, "should match pattern"),
        ({"sourceCustomerIds": ["C1", "C1"]}, "lists a holder more than once"),
        ({"accountOpenDate": "2023-02-30T00:00:00Z"}, "should match pattern"),
        ({"accountOpenDate": "2023-01-01T00:00:60Z"}, "should match pattern"),
        (
            {"status": "CLOSED", "accountCloseDate": "2000-01-01T00:00:00Z"},
            "accountCloseDate is before accountOpenDate",
        ),
        (
            {"cards": [card("A1", "C1"), card("A1", "C1")]},
            r"cards\[1\] repeats the holder and last4",
        ),
        ({"status": "CLOSED"}, "accountCloseDate is required"),
        ({"accountCloseDate": DATE}, "accountCloseDate must be null"),
        ({"cards": [card("OTHER", "C1")]}, r"cards\[0\].sourceAccountId must be the account's id"),
        ({"cards": [card("A1", "C9")]}, r"cards\[0\].sourceCustomerId must be one of"),
        ({"sourceAccountId": ""}, "at least 1 character"),
        ({"sourceAccountId": "A" * 121}, "at most 120 characters"),
    ],
)
def test_account_rules(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        AccountDocument.model_validate_json(_json(account("A1", ["C1"]) | overrides))


def test_account_cards_list_is_required_but_may_be_empty() -> None:
    AccountDocument.model_validate_json(_json(account("A1", ["C1"], cards=0)))
    document = account("A1", ["C1"])
    del document["cards"]
    with pytest.raises(ValidationError, match="cards\n  Field required"):
        AccountDocument.model_validate_json(_json(document))


def test_closed_account_with_close_date_passes() -> None:
    AccountDocument.model_validate_json(
        _json(account("A1", ["C1"], status="CLOSED", accountCloseDate=DATE))
    )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"organizationId": 50004}, "valid string"),
        ({"postalCode": 1234}, "valid string"),
        ({"country": "USA"}, "pattern"),
        ({"country": "us"}, "pattern"),
        ({"enrollmentOptInStatus": "YES"}, "'ACTIVE' or 'INACTIVE'"),
        ({"alertOptInStatus": ["ALL", "SOMETIMES"]}, "Input should be 'ALL'"),
        ({"alertOptInStatus": "ALL"}, "valid array"),
        ({"targetingIndicator": "MAYBE"}, "'TARGET' or 'DO_NOT_TARGET'"),
        ({"enrollmentEndDate": ""}, "pattern"),
        ({"sourceParentCustomerId": None}, "must be a string or absent, not null"),
        ({"customerCreationDate": None}, "valid string"),
        ({"accounts": [account("A1", ["SOMEONE"])]}, "must include the customer's own id"),
        ({"country": "ZZ"}, "not an assigned ISO 3166-1 alpha-2"),
        ({"country": "UK"}, "not an assigned ISO 3166-1 alpha-2"),
        ({"customerCreationDate": "2023-02-30T00:00:00Z"}, "pattern"),
        ({"enrollmentStartDate": "2023-02-29T00:00:00Z"}, "pattern"),
        ({"postalCode": "9" * 21}, "at most 20 characters"),
        ({"postalCode": "787\x0053"}, "should match pattern"),
        ({"postalCode": "78753\n"}, "should match pattern"),
        ({"sourceCustomerId": "C\r1"}, "should match pattern"),
        ({"organizationId": "5000\x004"}, "should match pattern"),
        ({"sourceParentCustomerId": "P\t1"}, "should match pattern"),
        ({"redemptionEligibility": "SOME"}, "'ALL' or 'NONE'"),
        ({"redemptionEligibility": None}, "must be ALL, NONE or absent, not null"),
        (
            {"enrollmentEndDate": "2000-01-01T00:00:00Z"},
            "enrollmentEndDate is before enrollmentStartDate",
        ),
        (
            {"accounts": [account("A1", ["C1"]), account("A1", ["C1"])]},
            r"accounts\[1\] repeats the sourceAccountId",
        ),
    ],
)
def test_customer_rules(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        CustomerDocument.model_validate_json(_json(customer("C1") | overrides))


@pytest.mark.parametrize(
    "field",
    [
        "sourceCustomerId",
        "organizationId",
        "postalCode",
        "country",
        "customerCreationDate",
        "enrollmentStartDate",
        "enrollmentOptInStatus",
        "alertOptInStatus",
        "targetingIndicator",
        "accounts",
    ],
)
def test_customer_required_fields(field: str) -> None:
    document = customer("C1")
    del document[field]
    with pytest.raises(ValidationError, match="Field required"):
        CustomerDocument.model_validate_json(_json(document))


@pytest.mark.parametrize("field", ["sourceParentCustomerId", "enrollmentEndDate"])
def test_customer_optional_fields_may_be_absent(field: str) -> None:
    document = customer("C1")
    del document[field]
    CustomerDocument.model_validate_json(_json(document))


def test_customer_with_end_date_and_empty_alerts_passes() -> None:
    document = customer("C1", enrollmentEndDate=DATE, alertOptInStatus=[])
    CustomerDocument.model_validate_json(_json(document))


@pytest.mark.parametrize("count", [1, 50])
def test_request_of_1_to_50_customers_passes(count: int) -> None:
    request = CustomersRequest.model_validate_json(
        request_body([customer(f"C{n}") for n in range(count)])
    )
    assert len(request.customers) == count


@pytest.mark.parametrize(("count", "match"), [(0, "at least 1 item"), (51, "at most 50 items")])
def test_request_size_limits(count: int, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        CustomersRequest.model_validate_json(
            request_body([customer(f"C{n}") for n in range(count)])
        )


def test_error_locations_name_the_customer_and_never_carry_card_data() -> None:
    documents = [customer(f"C{n}") for n in range(3)]
    broken = copy.deepcopy(documents)
    broken[2]["accounts"][0]["cards"][0]["last4"] = "12a4"
    with pytest.raises(ValidationError) as caught:
        CustomersRequest.model_validate_json(request_body(broken))
    (error,) = caught.value.errors(include_input=False)
    assert error["loc"] == ("customers", 2, "accounts", 0, "cards", 0, "last4")
    assert "12a4" not in error["msg"]


def test_models_are_strict_about_python_input_too() -> None:
    with pytest.raises(ValidationError):
        CardDocument.model_validate(card("A1", "C1", networkIdentifier="4"))


def test_error_text_never_shows_the_input() -> None:
    with pytest.raises(ValidationError) as caught:
        CardDocument.model_validate_json(_json(card("A1", "C1", last4="98x7", iin="99")))
    assert "98x7" not in str(caught.value)
    assert "'99'" not in str(caught.value)


@pytest.mark.parametrize("value", ["ALL", "NONE"])
def test_redemption_eligibility_passes_when_given(value: str) -> None:
    document = CustomerDocument.model_validate_json(
        _json(customer("C1") | {"redemptionEligibility": value})
    )
    assert document.redemptionEligibility == value


def test_control_character_errors_do_not_echo_the_postal_code() -> None:
    with pytest.raises(ValidationError) as caught:
        CustomerDocument.model_validate_json(_json(customer("C1") | {"postalCode": "SECRET\n9"}))
    assert "SECRET" not in str(caught.value)


def test_real_dates_and_assigned_countries_pass() -> None:
    CustomerDocument.model_validate_json(
        _json(
            customer("C1")
            | {"customerCreationDate": "2024-02-29T23:59:59Z", "country": "GB"}
            | {"postalCode": "SW1A 1AA", "organizationId": "AFFINA"}
        )
    )
