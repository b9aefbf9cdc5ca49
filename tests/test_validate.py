"""validate_extract: normalising, links, customer-atomic quarantine, rejects and the guard.

Pure tests on in-memory extracts (tests/extract_factory.py); the same checks over the real
readers are in test_bad_input.py.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError, GuardTripped
from customer_sync.schemas.extracts import MODELS
from customer_sync.transforms.validate import (
    HELD_BACK_COLUMNS,
    REJECT_COLUMNS,
    Validation,
    held_back_guard,
    validate_extract,
)
from tests.extract_factory import Rows, extract_of, raw_rows


def _validate(rows: Rows) -> Validation:
    return validate_extract(extract_of(rows))


def _ids(frame: pd.DataFrame, column: str) -> list[str]:
    return sorted(frame[column].dropna().tolist())


def _assert_accounted(v: Validation) -> None:
    for table in contract.TABLES:
        assert v.rows_read[table] == (
            v.rows_valid[table] + v.rows_rejected[table] + v.rows_withheld[table]
        ), table
        assert v.rows_withheld[table] >= 0
    assert v.customers_read == v.customers_valid + v.customers_held_back
    assert len(v.held_back) == v.customers_held_back
    assert len(v.customers) == v.customers_valid


# --- a valid extract -------------------------------------------------------------------------


def test_a_valid_extract_is_valid_whole() -> None:
    v = _validate(raw_rows())
    assert v.rows_read == {"customers": 5, "accounts": 5, "cards": 6}
    assert v.rows_valid == v.rows_read
    assert (v.customers_valid, v.customers_held_back) == (5, 0)
    assert v.rejects.empty
    assert list(v.rejects.columns) == list(REJECT_COLUMNS)
    assert v.held_back.empty
    assert list(v.held_back.columns) == list(HELD_BACK_COLUMNS)
    assert v.held_back_by_reason == {}
    assert (v.orphan_accounts, v.orphan_cards) == (0, 0)
    _assert_accounted(v)
    for table in contract.TABLES:
        MODELS[table].validate(getattr(v, table), lazy=True)


def test_valid_frames_are_normalised() -> None:
    v = _validate(raw_rows())
    customers = v.customers.set_index("sourceCustomerId")
    assert customers.loc["C001", "customerCreationDate"] == "2019-03-04T15:15:00Z"  # -05:00
    assert customers.loc["C001", "enrollmentStartDate"] == "2019-03-05T00:00:00Z"  # bare date
    assert customers.loc["C004", "enrollmentEndDate"] == "2021-01-01T08:00:00Z"  # naive = UTC
    assert customers.loc["C004", "alertOptInStatus"] == ""  # empty list
    assert customers.loc["C001", "alertOptInStatus"] == "EXPIRING|NEW"  # canonical order
    assert customers.loc["C001", "organizationId"] == "00123"
    assert customers.loc["C003", "postalCode"] == "00501"
    assert customers.loc["C004", "country"] == "NA"  # Namibia, not a missing value
    assert pd.isna(customers.loc["C001", "enrollmentEndDate"])
    accounts = v.accounts.set_index("sourceAccountId")
    assert accounts.loc["A100", "sourceCustomerIds"] == "C001"  # empty list = primary alone
    assert accounts.loc["A200", "sourceCustomerIds"] == "C001|C003"
    assert accounts.loc["A400", "accountCloseDate"] == "2022-06-30T21:00:00Z"
    cards = v.cards
    assert str(cards["networkIdentifier"].dtype) == "Int64"
    assert cards.loc[cards["last4"] == "0042", "networkIdentifier"].tolist() == [4]
    assert cards.loc[cards["status"] == "CLOSED", "closeDate"].tolist() == ["2022-06-30T00:00:00Z"]
    assert v.customers[contract.ROW_COLUMN].tolist() == [1, 2, 3, 4, 5]


def test_validation_does_not_mutate_its_input() -> None:
    extract = extract_of(raw_rows())
    before = {t: extract.table(t).copy() for t in contract.TABLES}
    rows = raw_rows()
    rows["cards"][0]["last4"] = "12"
    validate_extract(extract)
    validate_extract(extract_of(rows))
    for table in contract.TABLES:
        pd.testing.assert_frame_equal(extract.table(table), before[table])


def test_a_joint_account_with_a_holder_absent_from_the_extract_is_sent_for_the_other() -> None:
    v = _validate(raw_rows())
    assert "A500" in v.accounts["sourceAccountId"].tolist()
    a500_cards = v.cards[v.cards["sourceAccountId"] == "A500"]
    assert sorted(a500_cards["sourceCustomerId"]) == ["C002", "C999"]


# --- customer-atomic quarantine ---------------------------------------------------------------


def test_a_bad_card_on_a_joint_account_holds_back_every_holder() -> None:
    rows = raw_rows()
    rows["cards"][2]["last4"] = "56"  # A200, held by C001 and C003
    v = _validate(rows)
    assert _ids(v.held_back, "sourceCustomerId") == ["C001", "C003"]
    assert _ids(v.customers, "sourceCustomerId") == ["C002", "C004", "C005"]
    assert "A100" not in v.accounts["sourceAccountId"].tolist()  # C001's other account
    assert set(v.cards["sourceAccountId"]) == {"A400", "A500"}
    (reject,) = v.rejects.itertuples()
    assert (reject.table, reject.row, reject.column, reject.rule) == (
        "cards",
        3,
        "last4",
        "last4_digits",
    )
    assert reject.id == "A200/C003"
    assert reject.held_back_customers == "C001|C003"
    assert v.held_back_by_reason == {"cards.last4:last4_digits": 2}
    assert v.rows_withheld == {"customers": 2, "accounts": 2, "cards": 2}
    _assert_accounted(v)


def test_a_bad_joint_account_holds_back_the_holders_present_only() -> None:
    rows = raw_rows()
    rows["accounts"][4]["type"] = "CHECKING"  # A500: C002 and C999 (absent)
    v = _validate(rows)
    assert _ids(v.held_back, "sourceCustomerId") == ["C002"]
    assert v.rejects["held_back_customers"].tolist() == ["C002"]
    assert "A300" not in v.accounts["sourceAccountId"].tolist()
    # C002 itself, A300, and both cards of A500 (neither is bad: the account is)
    assert v.rows_withheld == {"customers": 1, "accounts": 1, "cards": 2}
    _assert_accounted(v)


def test_a_bad_customer_row_keeps_its_joint_account_for_the_other_holder() -> None:
    rows = raw_rows()
    rows["customers"][2]["country"] = "XX"  # C003, joint holder of A200 with C001
    v = _validate(rows)
    assert _ids(v.held_back, "sourceCustomerId") == ["C003"]
    assert "A200" in v.accounts["sourceAccountId"].tolist()
    a200 = v.cards[v.cards["sourceAccountId"] == "A200"]
    assert sorted(a200["sourceCustomerId"]) == ["C001", "C003"]  # the account is whole
    (reason,) = v.rejects["reason"]
    assert reason == "country 'XX' is not an ISO 3166-1 alpha-2 country code"
    _assert_accounted(v)


def test_duplicate_customer_ids_hold_back_every_copy() -> None:
    rows = raw_rows()
    rows["customers"][3]["sourceCustomerId"] = "C002"  # C004's row now claims C002
    v = _validate(rows)
    assert v.held_back["sourceCustomerId"].tolist() == ["C002", "C002"]
    assert v.held_back["row"].tolist() == [2, 4]
    assert v.rejects["rule"].tolist() == ["unique", "unique"]
    assert v.rejects["row"].tolist() == [2, 4]
    assert "A300" not in v.accounts["sourceAccountId"].tolist()
    assert v.customers_held_back == 2
    assert v.held_back_by_reason == {"customers.sourceCustomerId:unique": 2}
    _assert_accounted(v)


def test_a_customer_row_without_an_id_is_rejected_and_counted() -> None:
    rows = raw_rows()
    rows["customers"][3]["sourceCustomerId"] = "  "  # blank = missing
    v = _validate(rows)
    assert v.customers_held_back == 1
    assert v.held_back["row"].tolist() == [4]
    assert pd.isna(v.held_back["sourceCustomerId"].iloc[0])
    assert v.rejects["rule"].tolist() == ["required"]  # not also "unique" with other blanks
    _assert_accounted(v)


# --- links ---------------------------------------------------------------------------------


def test_an_account_without_a_holder_in_customers_is_an_orphan_and_so_are_its_cards() -> None:
    rows = raw_rows()
    rows["accounts"].append(
        {
            **rows["accounts"][2],
            "sourceAccountId": "A900",
            "sourceCustomerIds": "C900|C901",
            "primarySourceCustomerId": "C900",
        }
    )
    rows["cards"].append(
        {**rows["cards"][0], "sourceAccountId": "A900", "sourceCustomerId": "C900"}
    )
    v = _validate(rows)
    assert (v.orphan_accounts, v.orphan_cards) == (1, 1)
    assert v.customers_held_back == 0  # an orphan belongs to nobody in the extract
    assert v.rejects[["table", "row", "rule", "held_back_customers"]].values.tolist() == [
        ["accounts", 6, "orphan_account", ""],
        ["cards", 7, "orphan_card", ""],
    ]
    _assert_accounted(v)


def test_a_card_whose_account_is_missing_is_an_orphan_and_holds_back_its_holder() -> None:
    rows = raw_rows()
    rows["cards"][0]["sourceAccountId"] = "A404"
    v = _validate(rows)
    assert (v.orphan_accounts, v.orphan_cards) == (0, 1)
    (reject,) = v.rejects.itertuples()
    assert (reject.rule, reject.column, reject.held_back_customers) == (
        "orphan_card",
        "sourceAccountId",
        "C001",
    )
    assert "'A404' is not in the accounts table" in reject.reason
    _assert_accounted(v)


def test_a_card_whose_holder_is_not_on_its_account_holds_back_both() -> None:
    rows = raw_rows()
    rows["cards"][0]["sourceCustomerId"] = "C002"  # A100 is C001's alone
    v = _validate(rows)
    (reject,) = v.rejects.itertuples()
    assert (reject.rule, reject.column) == ("holder_of_account", "sourceCustomerId")
    assert reject.held_back_customers == "C001|C002"
    assert _ids(v.held_back, "sourceCustomerId") == ["C001", "C002"]
    _assert_accounted(v)


def test_a_primary_not_among_the_holders_holds_back_primary_and_holders() -> None:
    rows = raw_rows()
    rows["accounts"][1]["sourceCustomerIds"] = "C003|C005"  # A200's primary is C001
    v = _validate(rows)
    assert "primary_among_holders" in v.rejects["rule"].tolist()
    assert _ids(v.held_back, "sourceCustomerId") == ["C001", "C003", "C005"]
    _assert_accounted(v)


# --- rejects ---------------------------------------------------------------------------------


def test_a_bad_integer_is_reported_once_as_a_parse_problem() -> None:
    rows = raw_rows()
    rows["cards"][1]["networkIdentifier"] = "four"
    v = _validate(rows)
    assert v.rejects[["column", "rule", "reason"]].values.tolist() == [
        ["networkIdentifier", "integer", "networkIdentifier 'four' is not an integer"]
    ]


def test_rejects_never_quote_card_numbers_or_postal_codes() -> None:
    rows = raw_rows()
    rows["cards"][0]["last4"] = "98x7"
    rows["cards"][1]["iin"] = "55555x"
    rows["cards"][2]["last4"] = "1234"
    rows["cards"][2]["sourceCustomerId"] = "C001"  # duplicate of card 1's key, with its last4
    rows["customers"][1]["postalCode"] = "  "
    rows["customers"][2]["postalCode"] = "ZZ-77777-ZZ"
    rows["customers"][2]["country"] = "ZZ"
    v = _validate(rows)
    assert {"last4_digits", "iin_digits", "unique", "required"} <= set(v.rejects["rule"])
    text = " ".join(v.rejects.astype(str).to_numpy().ravel())
    for secret in ("98x7", "55555x", "1234", "ZZ-77777-ZZ", "02134"):
        assert secret not in text


def test_rejects_are_sorted_by_table_then_row_with_file_names() -> None:
    rows = raw_rows()
    rows["cards"][5]["status"] = "LOST"
    rows["customers"][4]["targetingIndicator"] = "MAYBE"
    rows["accounts"][0]["accountOpenDate"] = "2019-02-30"
    v = validate_extract(
        extract_of(rows, files={"customers": "c.csv", "accounts": "a.csv", "cards": "k.csv"})
    )
    assert v.rejects[["table", "file", "row"]].values.tolist() == [
        ["customers", "c.csv", 5],
        ["accounts", "a.csv", 1],
        ["cards", "k.csv", 6],
    ]
    assert v.rejects["reason"].tolist() == [
        "targetingIndicator 'MAYBE' is not an allowed value (one of TARGET, DO_NOT_TARGET)",
        "accountOpenDate '2019-02-30' is not an ISO-8601 date or date-time",
        "status 'LOST' is not an allowed value (one of OPEN, CLOSED)",
    ]


def test_an_empty_extract_is_valid_and_empty() -> None:
    v = _validate({"customers": [], "accounts": [], "cards": []})
    assert v.rows_read == {"customers": 0, "accounts": 0, "cards": 0}
    assert v.customers_read == 0
    assert v.rejects.empty
    assert v.held_back_share == 0.0
    held_back_guard(v, 0.0)


# --- the guard -------------------------------------------------------------------------------


def test_the_guard_passes_at_the_limit_and_trips_above_it() -> None:
    rows = raw_rows()
    rows["customers"][3]["country"] = "XX"  # 1 of 5 held back: 20%
    v = _validate(rows)
    assert v.held_back_share == pytest.approx(0.2)
    held_back_guard(v, 0.2)
    with pytest.raises(GuardTripped, match=r"1 of 5 customers \(20\.0%\).*limit of 5\.0%"):
        held_back_guard(v)
    with pytest.raises(GuardTripped, match=re.escape("customers.country:country_code")):
        held_back_guard(v, 0.19)


def test_the_guard_rejects_a_share_outside_0_to_1() -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        held_back_guard(_validate(raw_rows()), 1.5)


# --- every row accounted for, whatever is broken ------------------------------------------------

_CORRUPTIONS = st.sampled_from(
    [
        ("customers", "sourceCustomerId", None),
        ("customers", "sourceCustomerId", "C002"),
        ("customers", "country", "XX"),
        ("customers", "enrollmentStartDate", "not a date"),
        ("accounts", "sourceAccountId", "A200"),
        ("accounts", "sourceCustomerIds", "C003|C003"),
        ("accounts", "primarySourceCustomerId", "C777"),
        ("accounts", "status", "CLOSED"),
        ("accounts", "sourceCustomerIds", "C404"),
        ("cards", "sourceAccountId", "A404"),
        ("cards", "sourceCustomerId", "C004"),
        ("cards", "last4", "1"),
        ("cards", "networkIdentifier", "x"),
        ("cards", "status", "CLOSED"),
    ]
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_CORRUPTIONS, st.integers(0, 5)), max_size=6))
def test_every_row_is_accounted_for_and_nothing_invalid_is_kept(
    corruptions: list[tuple[tuple[str, str, str | None], int]],
) -> None:
    rows = raw_rows()
    for (table, column, value), at in corruptions:
        rows[table][at % len(rows[table])][column] = value
    v = _validate(rows)
    _assert_accounted(v)
    for table in contract.TABLES:
        MODELS[table].validate(getattr(v, table), lazy=True)
    valid_ids = set(v.customers["sourceCustomerId"])
    assert not valid_ids & set(v.held_back["sourceCustomerId"].dropna())
    held = set(v.held_back["sourceCustomerId"].dropna())
    blamed = {i for cell in v.rejects["held_back_customers"] for i in cell.split("|") if i}
    assert blamed == held
    for holders in v.accounts["sourceCustomerIds"]:
        assert set(holders.split("|")) & valid_ids
    assert set(v.cards["sourceAccountId"]) <= set(v.accounts["sourceAccountId"])
    # no valid customer loses part of its tree: every account and card naming it is kept
    for table, column in (("accounts", "primarySourceCustomerId"), ("cards", "sourceCustomerId")):
        raw = extract_of(rows).table(table)
        named = raw[raw[column].isin(valid_ids)]
        assert len(named) == (getattr(v, table)[column].isin(valid_ids)).sum()
