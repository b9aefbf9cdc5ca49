"""Validation of whole extracts for the contract rules of issue 10: long portfolio ids are
sent and counted, control characters and bad redemptionEligibility values hold the
customer back (with a reason that quotes no value), and the column may be left out."""

from __future__ import annotations

from customer_sync.transforms.validate import (
    combine_validations,
    settlement_width_warning,
    validate_extract,
)
from tests.extract_factory import extract_of, raw_rows

LONG_PORTFOLIO = "76afcd28-b494-4b29-b7f2-3eb614a92f97"  # the partner's own example, 36


def test_long_portfolio_ids_are_valid_and_counted_once() -> None:
    rows = raw_rows()
    rows["accounts"][0]["sourcePortfolioId"] = LONG_PORTFOLIO
    rows["accounts"][1]["sourcePortfolioId"] = "P" * 120
    validation = validate_extract(extract_of(rows))
    assert validation.rejects.empty
    assert validation.portfolio_ids_over_settlement_width == 2
    assert validation.summary()["portfolio_ids_over_settlement_width"] == 2
    warning = validation.settlement_width_warning
    assert warning is not None and warning.startswith("2 account(s)")
    assert LONG_PORTFOLIO not in warning
    assert combine_validations([validation, validation]).portfolio_ids_over_settlement_width == 4


def test_no_warning_within_the_settlement_width() -> None:
    validation = validate_extract(extract_of())
    assert validation.portfolio_ids_over_settlement_width == 0
    assert validation.settlement_width_warning is None
    assert settlement_width_warning(0) is None


def test_a_portfolio_id_over_120_holds_its_customers_back() -> None:
    rows = raw_rows()
    rows["accounts"][0]["sourcePortfolioId"] = "P" * 121
    validation = validate_extract(extract_of(rows))
    (reject,) = validation.rejects.itertuples()
    assert (reject.column, reject.rule) == ("sourcePortfolioId", "max_length")
    assert "at most 120 characters" in reject.reason


def test_control_characters_hold_the_customer_back_without_echoing_the_value() -> None:
    rows = raw_rows()
    rows["customers"][0]["postalCode"] = "021\x0034"
    rows["customers"][1]["sourceCustomerId"] = "C0\n02"
    validation = validate_extract(extract_of(rows))
    rejects = validation.rejects
    control = rejects[rejects["rule"] == "control_characters"]
    assert sorted(control["column"]) == ["postalCode", "sourceCustomerId"]
    assert not control["reason"].str.contains("021|\x00|\n").any()
    assert "holds a control character" in control["reason"].iloc[0]
    assert validation.customers_held_back >= 2


def test_postal_codes_over_20_characters_are_refused() -> None:
    rows = raw_rows()
    rows["customers"][0]["postalCode"] = "1" * 21
    (reject,) = validate_extract(extract_of(rows)).rejects.itertuples()
    assert (reject.column, reject.rule) == ("postalCode", "max_length")
    assert "1" * 21 not in reject.reason and "at most 20 characters" in reject.reason


def test_redemption_eligibility_is_an_enum_when_given() -> None:
    rows = raw_rows()
    rows["customers"][0]["redemptionEligibility"] = "ALL"
    rows["customers"][1]["redemptionEligibility"] = "NONE"
    rows["customers"][2]["redemptionEligibility"] = ""
    assert validate_extract(extract_of(rows)).rejects.empty
    rows["customers"][3]["redemptionEligibility"] = "SOMETIMES"
    (reject,) = validate_extract(extract_of(rows)).rejects.itertuples()
    assert (reject.column, reject.rule) == ("redemptionEligibility", "allowed_values")
    assert "(one of ALL, NONE)" in reject.reason


def test_an_extract_without_the_redemption_column_validates() -> None:
    extract = extract_of()
    customers = extract.customers.drop(columns=["redemptionEligibility"])
    validation = validate_extract(
        type(extract)(customers, extract.accounts, extract.cards, extract.files)
    )
    assert validation.rejects.empty
    assert validation.customers["redemptionEligibility"].isna().all()
