"""The Pandera models of the normalised extracts: a passing and a failing case for every rule."""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa
import pytest

from customer_sync.schemas import contract
from customer_sync.schemas.countries import COUNTRY_CODES
from customer_sync.schemas.extracts import (
    CARD_KEY_CHECK,
    MODELS,
    RULES,
    AccountExtract,
    CardExtract,
    CustomerExtract,
    rule_name,
)
from tests.extract_factory import normalised

SchemaErrors = pa.errors.SchemaErrors


def _frame(table: str, **cells: object) -> pd.DataFrame:
    """The valid normalised table with some cells of row 0 replaced."""
    frame = normalised(table)
    for column, value in cells.items():
        frame.loc[0, column] = value
    return frame


def _failing_indexes(error: SchemaErrors, check: str) -> set[int]:
    cases = error.failure_cases
    hit = cases["check"].astype(str).str.startswith(check)
    return set(cases.loc[hit, "index"].astype(int))


@pytest.mark.parametrize("table", contract.TABLES)
def test_the_valid_extract_passes_every_rule(table: str) -> None:
    MODELS[table].validate(normalised(table), lazy=True)


# (table, cells of row 0, pandera check name): one failing case per rule
FAILING = [
    # required fields
    *[
        ("customers", {column: None}, "not_nullable")
        for column in contract.CUSTOMER_COLUMNS
        if column not in contract.OPTIONAL_COLUMNS["customers"] and column != "alertOptInStatus"
    ],
    *[
        ("accounts", {column: None}, "not_nullable")
        for column in (
            "sourceAccountId",
            "primarySourceCustomerId",
            "status",
            "type",
            "sourcePortfolioId",
            "accountOpenDate",
            "sourceCustomerIds",
        )
    ],
    *[
        ("cards", {column: None}, "not_nullable")
        for column in contract.CARD_COLUMNS
        if column != "closeDate"
    ],
    # enums
    ("customers", {"enrollmentOptInStatus": "active"}, "isin"),
    ("customers", {"targetingIndicator": "TARGETED"}, "isin"),
    ("accounts", {"status": "SUSPENDED"}, "isin"),
    ("accounts", {"type": "CHK"}, "isin"),
    ("cards", {"cardType": "CHARGE"}, "isin"),
    ("cards", {"status": "DISPUTE"}, "isin"),
    ("cards", {"networkIdentifier": 7}, "isin"),
    ("cards", {"networkIdentifier": 0}, "isin"),
    # formats
    ("customers", {"country": "XX"}, "country_code"),
    ("customers", {"country": "UK"}, "country_code"),
    ("customers", {"country": "us"}, "country_code"),
    ("customers", {"country": "USA"}, "country_code"),
    ("cards", {"last4": "042"}, "last4_digits"),
    ("cards", {"last4": "12345"}, "last4_digits"),
    ("cards", {"last4": "12a4"}, "last4_digits"),
    ("cards", {"last4": "\u0661\u0662\u0663\u0664"}, "last4_digits"),  # Arabic-Indic digits
    ("cards", {"iin": "4123456"}, "iin_digits"),
    ("cards", {"iin": "41234"}, "iin_digits"),
    ("cards", {"iin": "412345678"}, "iin_digits"),
    ("cards", {"iin": "41234X"}, "iin_digits"),
    ("customers", {"alertOptInStatus": "NEW|WEEKLY"}, "alert_statuses"),
    ("customers", {"alertOptInStatus": "new"}, "alert_statuses"),
    # identifier lengths
    ("customers", {"sourceCustomerId": "C" * 121}, "str_length"),
    ("customers", {"sourceParentCustomerId": "P" * 121}, "str_length"),
    ("customers", {"organizationId": "0" * 121}, "str_length"),
    ("accounts", {"sourceAccountId": "A" * 121}, "str_length"),
    ("accounts", {"primarySourceCustomerId": "C" * 121}, "str_length"),
    # DECISION: portfolio ids follow the 120 of every id (20 is only the settlement width)
    ("accounts", {"sourcePortfolioId": "P" * 121}, "str_length"),
    # the stand-in's postal code limit, now validation's too
    ("customers", {"postalCode": "9" * 21}, "str_length"),
    # optional redemptionEligibility: an enum when given
    ("customers", {"redemptionEligibility": "SOME"}, "isin"),
    ("customers", {"redemptionEligibility": "all"}, "isin"),
    # control characters in ids, organizationId and postalCode
    *[
        (table, {column: value}, "control_characters")
        for table, columns in contract.CONTROL_FREE_COLUMNS.items()
        for column in columns
        for value in ("X\x00Y", "X\nY", "X\rY", "X\tY", "X\x1fY")
        if column != "sourceCustomerIds"
    ],
    ("accounts", {"sourceCustomerIds": "C001|C0\n03"}, "control_characters"),
    ("accounts", {"sourceCustomerIds": "C001\x00"}, "control_characters"),
    ("accounts", {"sourceCustomerIds": "C001|" + "C" * 121}, "holder_ids_length"),
    ("accounts", {"sourceCustomerIds": "C" * 121}, "holder_ids_length"),  # one holder
    ("cards", {"sourceAccountId": "A" * 121}, "str_length"),
    ("cards", {"sourceCustomerId": "C" * 121}, "str_length"),
    # dates parseable (normalised text that is not a real UTC instant)
    ("customers", {"customerCreationDate": "2019-03-04"}, "utc_datetime"),
    ("customers", {"enrollmentStartDate": "2023-02-29T00:00:00Z"}, "utc_datetime"),
    ("customers", {"enrollmentEndDate": "2024-04-31T00:00:00Z"}, "utc_datetime"),
    ("accounts", {"accountOpenDate": "2024-01-01T24:00:00Z"}, "utc_datetime"),
    ("accounts", {"accountCloseDate": "yesterday", "status": "CLOSED"}, "utc_datetime"),
    ("cards", {"openDate": "2024-13-01T00:00:00Z"}, "utc_datetime"),
    ("cards", {"closeDate": "0999-01-01T00:00:00Z", "status": "CLOSED"}, "utc_datetime"),
    # close date present iff CLOSED
    ("accounts", {"status": "CLOSED"}, "close_date_iff_closed"),
    ("accounts", {"accountCloseDate": "2024-01-01T00:00:00Z"}, "close_date_iff_closed"),
    ("cards", {"status": "CLOSED"}, "close_date_iff_closed"),
    ("cards", {"closeDate": "2024-01-01T00:00:00Z"}, "close_date_iff_closed"),
    # close/end dates not before open/start
    (
        "customers",
        {"enrollmentEndDate": "2019-03-04T23:59:59Z", "enrollmentOptInStatus": "INACTIVE"},
        "end_not_before_start",
    ),
    (
        "accounts",
        {"status": "CLOSED", "accountCloseDate": "2019-03-05T08:59:59Z"},
        "close_not_before_open",
    ),
    ("cards", {"status": "CLOSED", "closeDate": "2019-03-06T09:59:59Z"}, "close_not_before_open"),
    # holders
    ("accounts", {"sourceCustomerIds": "C001|C001|C003"}, "holders_listed_once"),
    ("accounts", {"sourceCustomerIds": "C003"}, "primary_among_holders"),
]


@pytest.mark.parametrize(
    ("table", "cells", "check"),
    FAILING,
    ids=[f"{t}-{'+'.join(c)}-{k}-{n}" for n, (t, c, k) in enumerate(FAILING)],
)
def test_each_rule_fails_on_its_bad_value(table: str, cells: dict[str, object], check: str) -> None:
    frame = _frame(table, **cells)
    with pytest.raises(SchemaErrors, match=re.escape(check)) as caught:
        MODELS[table].validate(frame, lazy=True)
    assert _failing_indexes(caught.value, check) == {0}
    assert rule_name(check) in RULES


@pytest.mark.parametrize(
    ("table", "column", "duplicate_of"),
    [
        ("customers", "sourceCustomerId", "C002"),
        ("accounts", "sourceAccountId", "A200"),
    ],
)
def test_duplicate_ids_fail_on_every_copy(table: str, column: str, duplicate_of: str) -> None:
    frame = _frame(table, **{column: duplicate_of})
    with pytest.raises(SchemaErrors, match="field_uniqueness") as caught:
        MODELS[table].validate(frame, lazy=True)
    copies = set(frame.index[frame[column] == duplicate_of])
    assert _failing_indexes(caught.value, "field_uniqueness") == copies
    assert len(copies) == 2


def test_cards_are_unique_on_account_holder_and_last4() -> None:
    frame = normalised("cards")
    frame.loc[2, ["sourceCustomerId", "last4"]] = ["C001", "1234"]  # same as row 1
    with pytest.raises(SchemaErrors, match=CARD_KEY_CHECK) as caught:
        CardExtract.validate(frame, lazy=True)
    assert _failing_indexes(caught.value, CARD_KEY_CHECK) == {1, 2}
    assert rule_name(CARD_KEY_CHECK) == "unique"


def test_same_last4_on_another_holder_or_account_is_unique() -> None:
    frame = normalised("cards")
    frame.loc[2, "last4"] = "1234"  # row 1 has A200/C001/1234; this is A200/C003/1234
    frame.loc[0, "last4"] = "1234"  # A100/C001/1234
    CardExtract.validate(frame, lazy=True)


# --- boundaries that must pass -------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "cells"),
    [
        ("customers", {"sourceCustomerId": "C" * 120}),
        ("customers", {"organizationId": "0" * 120, "sourceParentCustomerId": "P" * 120}),
        ("accounts", {"sourcePortfolioId": "P" * 20}),
        ("accounts", {"sourceAccountId": "A" * 120}),
        ("cards", {"iin": "41234567"}),
        ("cards", {"last4": "0000"}),
        ("customers", {"alertOptInStatus": ""}),
        ("customers", {"alertOptInStatus": "|".join(sorted(contract.ALERT_OPT_IN_STATUSES))}),
        ("customers", {"enrollmentStartDate": "2024-02-29T00:00:00Z"}),  # leap day
        ("customers", {"customerCreationDate": "2000-02-29T23:59:59Z"}),  # 400-year leap day
        # an end date equal to the start date is not before it
        ("customers", {"enrollmentEndDate": "2019-03-05T00:00:00Z"}),
        ("accounts", {"status": "CLOSED", "accountCloseDate": "2019-03-05T09:00:00Z"}),
        ("cards", {"status": "CLOSED", "closeDate": "2019-03-06T10:00:00Z"}),
        ("accounts", {"sourceCustomerIds": "C001|C002|C003", "primarySourceCustomerId": "C003"}),
        ("accounts", {"sourceCustomerIds": "C" * 120, "primarySourceCustomerId": "C" * 120}),
        # not as normalising writes them, but the rule is only about the statuses
        ("customers", {"alertOptInStatus": "NEW|ALL"}),
        ("customers", {"alertOptInStatus": "NEW|NEW"}),
        # portfolio ids up to 120 (longer than the settlement width of 20 only warns)
        ("accounts", {"sourcePortfolioId": "P" * 120}),
        ("accounts", {"sourcePortfolioId": "76afcd28-b494-4b29-b7f2-3eb614a92f97"}),
        ("customers", {"postalCode": "9" * 20}),
        ("customers", {"postalCode": "78753", "sourceCustomerId": "afa2r21-25f9-4501"}),
        # DEL and non-ASCII text are not control characters
        ("customers", {"sourceCustomerId": "C\x7f\u00e9\u2028", "postalCode": "SW1A 1AA"}),
        ("customers", {"redemptionEligibility": None}),
    ],
)
def test_boundary_values_pass(table: str, cells: dict[str, object]) -> None:
    MODELS[table].validate(_frame(table, **cells), lazy=True)


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("customers", "enrollmentOptInStatus", contract.ENROLLMENT_OPT_IN_STATUSES),
        ("customers", "targetingIndicator", contract.TARGETING_INDICATORS),
        ("customers", "alertOptInStatus", contract.ALERT_OPT_IN_STATUSES),
        ("accounts", "type", contract.ACCOUNT_TYPES),
        ("cards", "cardType", contract.CARD_TYPES),
        ("cards", "networkIdentifier", contract.NETWORK_IDENTIFIERS),
        ("customers", "redemptionEligibility", contract.REDEMPTION_ELIGIBILITIES),
    ],
)
def test_every_enum_value_passes(table: str, column: str, values: tuple[object, ...]) -> None:
    for value in values:
        MODELS[table].validate(_frame(table, **{column: value}), lazy=True)


@pytest.mark.parametrize("status", contract.ACCOUNT_STATUSES)
def test_every_account_status_passes_with_its_close_date_rule(status: str) -> None:
    close = "2020-01-01T00:00:00Z" if status == contract.CLOSED_STATUS else None
    AccountExtract.validate(_frame("accounts", status=status, accountCloseDate=close), lazy=True)


def test_every_official_country_code_passes() -> None:
    assert len(COUNTRY_CODES) == 249
    base = normalised("customers").iloc[[0]]
    frame = pd.concat([base] * len(COUNTRY_CODES), ignore_index=True)
    frame["sourceCustomerId"] = [f"C{n}" for n in range(len(frame))]
    frame["country"] = pd.Series(sorted(COUNTRY_CODES), dtype="str")
    CustomerExtract.validate(frame, lazy=True)


@pytest.mark.parametrize("table", contract.TABLES)
def test_text_columns_must_have_the_text_dtype(table: str) -> None:
    frame = normalised(table)
    column = contract.ID_COLUMNS[table][0]
    frame[column] = frame[column].astype(object)  # the same strings, another dtype
    with pytest.raises(SchemaErrors, match="dtype") as caught:
        MODELS[table].validate(frame, lazy=True)
    assert set(caught.value.failure_cases["column"]) == {column}


def test_models_are_strict_about_unknown_columns() -> None:
    frame = normalised("customers").assign(nickname="x")
    with pytest.raises(SchemaErrors, match="column_in_schema"):
        CustomerExtract.validate(frame, lazy=True)


def test_lazy_validation_reports_every_failure_at_once() -> None:
    frame = _frame("cards", last4="12", iin="1", cardType="X", networkIdentifier=9)
    with pytest.raises(SchemaErrors) as caught:
        CardExtract.validate(frame, lazy=True)
    checks = {rule_name(str(c)) for c in caught.value.failure_cases["check"]}
    assert {"last4_digits", "iin_digits", "allowed_values"} <= checks


def test_a_frame_without_the_optional_redemption_column_passes() -> None:
    frame = normalised("customers").drop(columns=["redemptionEligibility"], errors="ignore")
    CustomerExtract.validate(frame, lazy=True)
