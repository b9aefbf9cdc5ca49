"""The fast nest must give the reference's bytes, exactly, for any input."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from customer_sync.schemas import contract
from customer_sync.transforms.fast_nest import (
    DEFAULT_CHUNK_ROWS,
    CustomerDocuments,
    customer_document_bytes,
    customer_document_texts,
    json_strings,
)
from customer_sync.transforms.nest import customer_documents, serialise_document
from tests.normalised_factory import (
    AWKWARD,
    LATER,
    Frames,
    account,
    card,
    customer,
    frames,
    household,
    maybe_texts,
    normalised_inputs,
)


def _reference(inputs: Frames) -> CustomerDocuments:
    documents = customer_documents(*inputs)
    return CustomerDocuments(
        customer_ids=[str(d["sourceCustomerId"]) for d in documents],
        documents=[serialise_document(d) for d in documents],
    )


def _assert_same_bytes(inputs: Frames, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
    fast = customer_document_bytes(*inputs, chunk_rows=chunk_rows)
    expected = _reference(inputs)
    assert fast.customer_ids == expected.customer_ids
    for got, want in zip(fast.documents, expected.documents, strict=True):
        assert got == want


# --- table-driven cases -------------------------------------------------------------------


def _with_awkward_text(text: str) -> Frames:
    """Every text field of every table holds ``text`` (ids keep a prefix to stay distinct)."""
    return frames(
        [customer("c1" + text, **{f: text for f in ("organizationId", "postalCode", "country")})],
        [account("a" + text, "c1" + text, "x" + text, sourcePortfolioId=text, type=text)],
        [card("a" + text, "c1" + text, last4=text, iin=text, openDate=text, closeDate=text)],
    )


CASES: dict[str, Frames] = {
    "nothing": frames(),
    "customers without accounts": frames([customer("c1"), customer("c2")]),
    "accounts without cards": frames([customer("c1")], [account("a1", "c1")]),
    "household with joint account": household(),
    "parent present, missing, empty": frames(
        [
            customer("c1", sourceParentCustomerId="p"),
            customer("c2", sourceParentCustomerId=None),
            customer("c3", sourceParentCustomerId=""),
        ]
    ),
    "nulls everywhere": frames(
        [{"sourceCustomerId": "c1"}],
        [{"sourceAccountId": "a1", "primarySourceCustomerId": "c1"}],
        [{"sourceAccountId": "a1"}],
    ),
    "closed and dated": frames(
        [customer("c1", enrollmentEndDate=LATER, alertOptInStatus="ALL|NEW|EXPIRING")],
        [account("a1", "c1", status="CLOSED", accountCloseDate=LATER)],
        [card("a1", "c1", status="CLOSED", closeDate=LATER, networkIdentifier=6)],
    ),
    "holder listed twice, holders with empty items": frames(
        [customer("c1"), customer("")],
        [
            account("a1", "c1", sourceCustomerIds="c1|c1"),
            account("a2", "c1", sourceCustomerIds="|c1|"),
        ],
    ),
    "orphan cards and accounts of absent holders": frames(
        [customer("c1")],
        [account("a1", "c1"), account("a2", "nobody")],
        [card("a1", "c1"), card("zz", "c1"), card("a2", "nobody")],
    ),
    "duplicate ids (invalid, but the same bytes)": frames(
        [customer("c1"), customer("c1", postalCode="99999")],
        [account("a1", "c1"), account("a1", "c1", type="DDA")],
        [card("a1", "c1")],
    ),
    "extreme network identifiers": frames(
        [customer("c1")],
        [account("a1", "c1")],
        [card("a1", "c1", networkIdentifier=n) for n in (0, -1, 2**63 - 1, -(2**63), None)],
    ),
    **{f"awkward {text!r}": _with_awkward_text(text) for text in AWKWARD},
    **{f"control U+{code:04X}": _with_awkward_text(chr(code)) for code in range(0x20)},
}


@pytest.mark.parametrize("inputs", CASES.values(), ids=CASES.keys())
def test_same_bytes_as_the_reference(inputs: Frames) -> None:
    _assert_same_bytes(inputs)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 4])
def test_same_bytes_in_chunks_of_any_size(chunk_rows: int) -> None:
    more = frames(
        [customer(f"n{i}") for i in range(4)],
        [account("a-n", "n0", "n3", "c2"), account("a-n1", "n1")],
        [card("a-n", "n3"), card("a-joint", "c1")],
    )
    inputs = tuple(
        pd.concat(pair, ignore_index=True) for pair in zip(household(), more, strict=True)
    )

    _assert_same_bytes(inputs, chunk_rows=chunk_rows)  # type: ignore[arg-type]
    _assert_same_bytes(CASES["duplicate ids (invalid, but the same bytes)"], chunk_rows=chunk_rows)


def test_texts_are_the_documents() -> None:
    inputs = household()

    texts = customer_document_texts(*inputs)

    assert [t.encode() for t in texts.to_pylist()] == customer_document_bytes(*inputs).documents
    assert customer_document_texts(*frames()).to_pylist() == []


def test_refuses_chunks_of_no_rows() -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        customer_document_bytes(*household(), chunk_rows=0)


def test_slices_of_frames() -> None:
    customers, accounts, cards = _with_awkward_text('"\\\x01')
    big = tuple(pd.concat([part] * 4, ignore_index=True) for part in household())

    _assert_same_bytes((big[0].iloc[1:5], big[1].iloc[2:], big[2].iloc[3:7]))
    _assert_same_bytes((customers.iloc[1:], accounts.iloc[1:], cards.iloc[1:]))


def test_chunked_object_and_category_columns() -> None:
    customers, accounts, cards = household()
    chunked = pd.concat([customers.iloc[:1], customers.iloc[1:]], ignore_index=True)
    as_objects = accounts.astype({name: object for name in contract.ACCOUNT_COLUMNS})
    as_categories = cards.astype({"cardType": "category", "sourceAccountId": "category"})

    _assert_same_bytes((chunked, as_objects, as_categories))


def test_absent_optional_columns() -> None:
    customers, accounts, cards = household()
    _assert_same_bytes(
        (
            customers.drop(columns=["sourceParentCustomerId", "enrollmentEndDate"]),
            accounts.drop(columns=["sourceCustomerIds", "accountCloseDate"]),
            cards.drop(columns=["closeDate"]),
        )
    )


def test_absent_redemption_eligibility_column() -> None:
    customers, accounts, cards = household()
    _assert_same_bytes((customers.drop(columns=["redemptionEligibility"]), accounts, cards))


def test_refuses_what_the_reference_refuses() -> None:
    customers, accounts, cards = household()
    with pytest.raises(ValueError, match="'country'"):
        customer_document_bytes(customers.drop(columns="country"), accounts, cards)
    with pytest.raises(TypeError, match="networkIdentifier"):
        customer_document_bytes(customers, accounts, cards.astype({"networkIdentifier": str}))
    with pytest.raises(TypeError, match="postalCode"):
        customer_document_bytes(customers.assign(postalCode=1234), accounts, cards)


def test_inputs_are_not_mutated() -> None:
    inputs = household()
    before = tuple(part.copy(deep=True) for part in inputs)

    customer_document_bytes(*inputs)

    for after, original in zip(inputs, before, strict=True):
        pd.testing.assert_frame_equal(after, original)


def test_result_is_ids_and_documents_in_customer_order() -> None:
    result = customer_document_bytes(*household())

    assert result.customer_ids == ["c1", "c2", "c3"]
    assert len(result) == 3
    assert [orjson.loads(d)["sourceCustomerId"] for d in result.documents] == ["c1", "c2", "c3"]


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(maybe_texts, max_size=20))
def test_json_strings_escape_as_orjson_does(values: list[str | None]) -> None:
    escaped = json_strings(pa.array(values, pa.large_string())).to_pylist()

    assert escaped == [orjson.dumps(value).decode() for value in values]


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(normalised_inputs(), st.integers(1, 4) | st.just(DEFAULT_CHUNK_ROWS))
def test_same_bytes_as_the_reference_for_any_input(inputs: Frames, chunk_rows: int) -> None:
    _assert_same_bytes(inputs, chunk_rows)


def _holders(account_row: pd.Series) -> list[str]:
    listed = account_row["sourceCustomerIds"]
    holders = (
        listed if isinstance(listed, str) and listed else account_row["primarySourceCustomerId"]
    )
    return str(holders).split(contract.LIST_SEPARATOR)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(normalised_inputs(unique_customer_ids=True), st.integers(1, 3))
def test_customers_split_into_parts_give_the_same_documents(inputs: Frames, parts: int) -> None:
    """What a streamed run relies on: nest each part of the customers with the accounts any
    of them holds and those accounts' cards, and the documents are those of the whole."""
    customers, accounts, cards = inputs
    pieces: list[bytes] = []
    for rows in np.array_split(np.arange(len(customers)), parts):
        part = customers.iloc[rows]
        ids = set(part["sourceCustomerId"])
        held = [bool(ids.intersection(_holders(row))) for _, row in accounts.iterrows()]
        part_accounts = accounts[np.array(held, dtype=bool)]
        part_cards = cards[cards["sourceAccountId"].isin(part_accounts["sourceAccountId"])]
        pieces += customer_document_bytes(part, part_accounts, part_cards).documents

    assert pieces == customer_document_bytes(*inputs).documents


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    normalised_inputs(),
    st.sampled_from(["absent", "values", "arbitrary"]),
    st.lists(st.sampled_from(["ALL", "NONE", "", None]), min_size=5, max_size=5),
)
def test_same_bytes_with_or_without_redemption_eligibility(
    inputs: Frames, shape: str, values: list[str | None]
) -> None:
    """The optional field in both nests: column absent, the partner's values (and empty or
    missing cells), or arbitrary text as normalised_inputs draws it."""
    customers, accounts, cards = inputs
    if shape == "absent":
        customers = customers.drop(columns=["redemptionEligibility"])
    elif shape == "values":
        cells = pd.Series(values[: len(customers)], dtype="str", index=customers.index)
        customers = customers.assign(redemptionEligibility=cells)
    _assert_same_bytes((customers, accounts, cards))
