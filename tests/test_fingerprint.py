"""Fingerprints: stable where the document is the same, different where it is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from customer_sync.adapters.readers import read_extract
from customer_sync.schemas import contract
from customer_sync.transforms.fast_nest import customer_document_bytes
from customer_sync.transforms.fingerprint import (
    FINGERPRINT_VERSION,
    customer_fingerprints,
    fingerprinted_documents,
)
from customer_sync.transforms.nest import customer_documents
from customer_sync.transforms.validate import validate_extract
from tests.normalised_factory import (
    LATER,
    Frames,
    account,
    card,
    customer,
    frame,
    frames,
    household,
    normalised_inputs,
    shuffled,
    texts,
)


def _changed(before: Frames, after: Frames) -> set[str]:
    """The customers whose fingerprint differs between two inputs."""
    old, new = customer_fingerprints(*before), customer_fingerprints(*after)
    return {cid for cid in new.index if old.get(cid) != new[cid]}


def _edited(inputs: Frames, table: int, row: int, **fields: Any) -> Frames:
    parts = [part.copy() for part in inputs]
    for name, value in fields.items():
        parts[table].loc[row, name] = value
    return parts[0], parts[1], parts[2]


def test_one_fingerprint_of_32_hex_characters_per_customer() -> None:
    fingerprints = customer_fingerprints(*household())

    assert list(fingerprints.index) == ["c1", "c2", "c3"]
    assert fingerprints.index.name == "sourceCustomerId"
    assert fingerprints.str.fullmatch(r"[0-9a-f]{32}").all()
    assert fingerprints.is_unique
    assert isinstance(FINGERPRINT_VERSION, int)


def test_pinned_values_change_only_with_the_version() -> None:
    """The ledger keeps fingerprints across releases: a change here (a new pandas hash, a
    changed value rule) re-sends every customer, so it must come with a new version."""
    assert FINGERPRINT_VERSION == 1
    assert customer_fingerprints(*household()).to_dict() == {
        "c1": "537f0f526161e86d4991cae725f427dc",
        "c2": "c624838c08f6f3b30d679a1f46f4c214",
        "c3": "c6cf006c6b97ad24fbadc26d7800b21f",
    }


def test_same_input_same_fingerprints() -> None:
    pd.testing.assert_series_equal(
        customer_fingerprints(*household()), customer_fingerprints(*household())
    )


@pytest.mark.parametrize("seed", range(5))
def test_stable_under_row_shuffles(seed: int) -> None:
    inputs = household()

    pd.testing.assert_series_equal(
        customer_fingerprints(*shuffled(inputs, seed)).sort_index(),
        customer_fingerprints(*inputs).sort_index(),
    )


def test_changes_on_a_card_field_only_for_its_holders() -> None:
    inputs = household()  # card row 3 is the card of c3's own account

    assert _changed(inputs, _edited(inputs, 2, 3, last4="9999")) == {"c3"}


def test_joint_account_co_holders_change_together() -> None:
    inputs = household()  # card row 0 is a card of the joint account of c1 and c2

    assert _changed(inputs, _edited(inputs, 2, 0, status="CLOSED", closeDate=LATER)) == {
        "c1",
        "c2",
    }
    # a new co-holder changes the holder list every holder receives
    assert _changed(inputs, _edited(inputs, 1, 1, sourceCustomerIds="c1|c2|c3|c9")) == {
        "c1",
        "c2",
        "c3",
    }


@pytest.mark.parametrize(
    ("table", "row", "field", "value", "changed"),
    [
        (0, 0, "postalCode", "99999", {"c1"}),
        (0, 1, "sourceParentCustomerId", "p", {"c2"}),
        (0, 2, "alertOptInStatus", "", {"c3"}),
        (0, 2, "enrollmentEndDate", LATER, {"c3"}),
        (1, 0, "type", "DDA", {"c1"}),
        (1, 1, "accountOpenDate", LATER, {"c1", "c2"}),
        (1, 2, "primarySourceCustomerId", "cX", {"c3"}),
        (2, 1, "networkIdentifier", 5, {"c1"}),
        (2, 2, "sourceCustomerId", "c2", {"c1", "c2"}),
        (2, 3, "sourceAccountId", "a-own-1", {"c1", "c3"}),  # a card moves to c1
    ],
)
def test_changes_exactly_where_the_document_changes(
    table: int, row: int, field: str, value: object, changed: set[str]
) -> None:
    inputs = household()

    assert _changed(inputs, _edited(inputs, table, row, **{field: value})) == changed


def test_added_and_removed_rows_change_their_customers() -> None:
    customers, accounts, cards = inputs = household()
    extra_card = frame("cards", [card("a-own-3", "c3", last4="0003")])
    # a second identical card is a different document: the sums must not cancel out
    repeated_card = cards.iloc[[3]]

    assert _changed(inputs, (customers, accounts, pd.concat([cards, extra_card]))) == {"c3"}
    assert _changed(inputs, (customers, accounts, pd.concat([cards, repeated_card]))) == {"c3"}
    assert _changed(inputs, (customers, accounts, cards.drop(index=1))) == {"c1"}
    assert _changed(inputs, (customers, accounts.drop(index=1), cards)) == {"c1", "c2"}


def test_unchanged_customers_keep_theirs_when_others_come_and_go() -> None:
    customers, accounts, cards = inputs = household()
    newcomer = frames([customer("c4")], [account("a4", "c4")], [card("a4", "c4")])
    more = tuple(
        pd.concat([old, new], ignore_index=True) for old, new in zip(inputs, newcomer, strict=True)
    )
    before = customer_fingerprints(*inputs)

    fewer = customer_fingerprints(customers.iloc[[0, 2]], accounts, cards)
    assert fewer.to_dict() == {"c1": before["c1"], "c3": before["c3"]}
    after = customer_fingerprints(*more)
    assert after.drop("c4").to_dict() == before.to_dict()
    assert after["c4"] not in set(before)


def test_independent_of_how_the_frames_hold_their_values() -> None:
    """The same values from CSV (object text, int64) or Parquet (str, Int64, categories)."""
    customers, accounts, cards = household()
    as_csv = (
        customers.astype(object),
        accounts.astype(object).assign(accountCloseDate=""),
        cards.astype({"networkIdentifier": "int64", "last4": object, "cardType": "category"}),
    )
    as_parquet = (
        customers.drop(columns=["sourceParentCustomerId", "enrollmentEndDate"]),
        accounts.drop(columns="accountCloseDate"),
        cards,
    )

    expected = customer_fingerprints(customers, accounts, cards)
    pd.testing.assert_series_equal(customer_fingerprints(*as_csv), expected)
    pd.testing.assert_series_equal(customer_fingerprints(*as_parquet), expected)


def _write_extract(folder: Path, suffix: str, inputs: Frames) -> Path:
    folder.mkdir()
    for table, part in zip(contract.TABLES, inputs, strict=True):
        text = part.drop(columns=contract.ROW_COLUMN).astype("str")
        if suffix == ".csv":
            text.to_csv(folder / f"{table}.csv", index=False)
        else:
            pq.write_table(
                pa.Table.from_pandas(text, preserve_index=False), folder / f"{table}{suffix}"
            )
    return folder


def _validated_fingerprints(folder: Path) -> pd.Series:
    validation = validate_extract(read_extract(folder))
    assert validation.customers_held_back == 0
    fingerprints = customer_fingerprints(
        validation.customers, validation.accounts, validation.cards
    )
    assert sorted(fingerprints.index) == ["c1", "c2"]
    return fingerprints.sort_index()


def test_stable_from_csv_or_parquet_however_dates_and_lists_were_written(tmp_path: Path) -> None:
    """End to end through the readers and validation: the same data, written two ways."""
    rows = (
        [customer("c1", alertOptInStatus="NEW|ALL"), customer("c2", enrollmentEndDate=LATER)],
        [account("a1", "c1"), account("a2", "c2", "c1")],
        [card("a1", "c1"), card("a2", "c2", openDate="2024-01-02T03:04:05Z")],
    )
    written_otherwise = (
        [
            customer(
                "c1", alertOptInStatus="ALL|NEW", customerCreationDate="2024-01-02 04:04:05+01:00"
            ),
            customer("c2", enrollmentEndDate="2025-06-07T08:09:10.250Z"),
        ],
        [
            account("a1", "c1", accountOpenDate="2024-01-02T03:04:05+00:00"),
            account("a2", "c2", "c1", sourceCustomerIds="c1|c2"),
        ],
        [card("a2", "c2", openDate="2024-01-01T22:04:05-05:00"), card("a1", "c1")],
    )
    as_csv = _write_extract(tmp_path / "csv", ".csv", frames(*rows))
    as_parquet = _write_extract(
        tmp_path / "parquet", ".parquet", shuffled(frames(*written_otherwise), 3)
    )

    pd.testing.assert_series_equal(
        _validated_fingerprints(as_parquet), _validated_fingerprints(as_csv)
    )


def test_row_numbers_and_extra_columns_do_not_count() -> None:
    customers, accounts, cards = household()
    renumbered = (
        customers.assign(_row=customers["_row"] + 100, note="x"),
        accounts.assign(_row=np.arange(3)[::-1] + 7),
        cards.assign(extra=1),
    )

    pd.testing.assert_series_equal(
        customer_fingerprints(*renumbered), customer_fingerprints(customers, accounts, cards)
    )


def test_inputs_are_not_mutated() -> None:
    inputs = household()
    before = tuple(part.copy(deep=True) for part in inputs)

    customer_fingerprints(*inputs)

    for after, original in zip(inputs, before, strict=True):
        pd.testing.assert_frame_equal(after, original)


@pytest.mark.parametrize("chunk_rows", [1, 2, 100_000])
def test_documents_with_fingerprints_are_the_two_apart(chunk_rows: int) -> None:
    inputs = household()

    documents, fingerprints = fingerprinted_documents(*inputs, chunk_rows=chunk_rows)

    assert documents == customer_document_bytes(*inputs)
    pd.testing.assert_series_equal(fingerprints, customer_fingerprints(*inputs))


# --- properties: the fingerprint follows the document, up to the order of its lists ------


def _canonical(document: dict[str, Any]) -> bytes:
    """The document with accounts and cards in a fixed order (what the fingerprint sees)."""
    accounts = [{**a, "cards": sorted(a["cards"], key=orjson.dumps)} for a in document["accounts"]]
    return orjson.dumps({**document, "accounts": sorted(accounts, key=orjson.dumps)})


def _canonical_documents(inputs: Frames) -> list[bytes]:
    return [_canonical(document) for document in customer_documents(*inputs)]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalised_inputs(unique_customer_ids=True), st.integers(0, 2**32 - 1))
def test_stable_under_any_shuffle(inputs: Frames, seed: int) -> None:
    pd.testing.assert_series_equal(
        customer_fingerprints(*shuffled(inputs, seed)).sort_index(),
        customer_fingerprints(*inputs).sort_index(),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalised_inputs(), st.integers(1, 3))
def test_documents_with_fingerprints_are_the_two_apart_for_any_input(
    inputs: Frames, chunk_rows: int
) -> None:
    documents, fingerprints = fingerprinted_documents(*inputs, chunk_rows=chunk_rows)

    assert documents == customer_document_bytes(*inputs)
    pd.testing.assert_series_equal(fingerprints, customer_fingerprints(*inputs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalised_inputs(unique_customer_ids=True), st.data())
def test_changes_if_and_only_if_the_document_changes(inputs: Frames, data: st.DataObject) -> None:
    table = data.draw(st.sampled_from([i for i, part in enumerate(inputs) if len(part)] or [0]))
    edited = inputs
    if len(inputs[table]):
        name = data.draw(st.sampled_from(contract.COLUMNS[contract.TABLES[table]]))
        value: Any = data.draw(
            st.none() | st.integers(3, 6) if name == "networkIdentifier" else st.none() | texts
        )
        row = data.draw(st.integers(0, len(inputs[table]) - 1))
        edited = _edited(inputs, table, row, **{name: value})

    # by position: customers keep their rows, even when the edit is to a customer's id
    fingerprints_same = customer_fingerprints(*inputs).array == customer_fingerprints(*edited).array
    documents_same = [
        before == after
        for before, after in zip(
            _canonical_documents(inputs), _canonical_documents(edited), strict=True
        )
    ]
    assert list(fingerprints_same) == documents_same


# Fingerprints of tests.normalised_factory.household() taken before redemptionEligibility
# existed: a ledger written then must not see these customers as changed.
_FINGERPRINTS_BEFORE_REDEMPTION_ELIGIBILITY = {
    "c1": "537f0f526161e86d4991cae725f427dc",
    "c2": "c624838c08f6f3b30d679a1f46f4c214",
    "c3": "c6cf006c6b97ad24fbadc26d7800b21f",
}


def test_without_redemption_eligibility_fingerprints_are_as_before_the_field() -> None:
    from tests.normalised_factory import household

    customers, accounts, cards = household()
    assert customer_fingerprints(customers, accounts, cards).to_dict() == (
        _FINGERPRINTS_BEFORE_REDEMPTION_ELIGIBILITY
    )
    absent = customers.drop(columns=["redemptionEligibility"])
    empty = customers.assign(redemptionEligibility=pd.Series([""] * 3, dtype="str"))
    for variant in (absent, empty):
        assert customer_fingerprints(variant, accounts, cards).to_dict() == (
            _FINGERPRINTS_BEFORE_REDEMPTION_ELIGIBILITY
        )


def test_redemption_eligibility_changes_the_fingerprint() -> None:
    from tests.normalised_factory import household

    customers, accounts, cards = household()
    given = customers.assign(redemptionEligibility=pd.Series(["ALL", "NONE", None], dtype="str"))
    fingerprints = customer_fingerprints(given, accounts, cards).to_dict()
    before = _FINGERPRINTS_BEFORE_REDEMPTION_ELIGIBILITY
    assert fingerprints["c1"] != before["c1"] and fingerprints["c2"] != before["c2"]
    assert fingerprints["c3"] == before["c3"]
    other = given.assign(redemptionEligibility=pd.Series(["NONE", "NONE", None], dtype="str"))
    assert customer_fingerprints(other, accounts, cards)["c1"] != fingerprints["c1"]
