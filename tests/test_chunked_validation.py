"""Validating an extract in chunks of customers gives exactly the whole extract's validation.

Each case validates the same extract whole and in tiny chunks (routed as
``customer_sync.chunking.routing`` says), combines the chunks' validations, and compares what a user
sees: valid customers, accounts and cards, held-back customers with their reasons, reject
rows (as a multiset), every count, and the documents and fingerprints of the valid
customers. The messy extract has joint accounts across chunks, duplicate account ids with
different holders, duplicate customer ids, orphan accounts and cards, cards whose holder is
not on their account, rows without ids and invalid values.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from customer_sync.chunking.id_hash import id_hashes
from customer_sync.chunking.routing import ChunkScope, HashCollision
from customer_sync.schemas.records import Extract
from customer_sync.transforms.validate import Validation, combine_validations, validate_extract
from tests.chunk_support import (
    assert_same_validation,
    chunks_in_memory,
    documents_of,
)
from tests.extract_factory import Rows, extract_of, raw_rows
from tests.extract_factory import _account as _factory_account
from tests.extract_factory import _card as _factory_card
from tests.extract_factory import _customer as _factory_customer

Cell = str | None


def _customer(cid: Cell, **overrides: Cell) -> dict[str, Cell]:
    return _factory_customer("", **{"sourceCustomerId": cid, **overrides})


def _account(aid: Cell, primary: Cell, holders: Cell, **overrides: Cell) -> dict[str, Cell]:
    return _factory_account(
        "", "", holders, **{"sourceAccountId": aid, "primarySourceCustomerId": primary, **overrides}
    )


def _card(
    aid: Cell, cid: Cell, last4: str, iin: str, network: str, **overrides: Cell
) -> dict[str, Cell]:
    return _factory_card(
        "",
        "",
        last4,
        iin,
        network,
        **{"sourceAccountId": aid, "sourceCustomerId": cid, **overrides},
    )


def messy_rows() -> Rows:
    """The factory's valid extract, plus every kind of trouble that crosses tables."""
    rows = raw_rows()
    rows["customers"] += [
        _customer("C006", country="XX"),  # held back by its own row
        _customer("C007"),
        _customer("C007", postalCode="10001"),  # duplicate id: both copies held back
        _customer(" C008 "),  # whitespace around the id
        _customer(None),  # no id at all
        _customer("C009", enrollmentEndDate="2001-01-01"),  # ends before it starts
        _customer("C010"),
        _customer("C011"),
        _customer("C012"),
        _customer("C013"),
        _customer("C014"),
        _customer("C015"),
    ]
    rows["accounts"] += [
        _account("A600", "C001", "C006|C001"),  # joint: one holder held back, one valid
        _account("A700", "C010", "C010"),
        _account("A700", "C011", "C011"),  # duplicate account id, other holder
        _account("A800", "C998", "C998"),  # orphan account
        _account("A900", "C008", "C008|C012"),  # joint, holder written with spaces
        _account(None, "C995", None),  # no account id, and an orphan
        _account(None, "C013", "C013"),  # no account id
        _account("A950", None, None),  # nobody at all
        _account("A960", "C014", "C015|C997"),  # primary not among holders
        _account("A970", "C007", "C007|C012"),  # joint with a duplicated customer
        _account("A980", "C996", "C996|C015"),  # joint with an absent holder
        _account("A990", "C009", "C009|C010", accountOpenDate="not a date"),  # invalid, joint
    ]
    rows["cards"] += [
        _card("A600", "C006", "3333", "412345", "4"),
        _card("A600", "C001", "3334", "412345", "4"),
        _card("A700", "C010", "4444", "412345", "4"),
        _card("A800", "C998", "5555", "412345", "4"),  # card of an orphan account
        _card("A999", "C005", "6666", "412345", "4"),  # account not in the extract
        _card("A300", "C012", "7777", "412345", "4"),  # holder not on the account
        _card("A900", " C008", "8888", "412345", "4"),
        _card("A900", "C012", "8889", "412345", "7"),  # bad network
        _card(None, "C013", "9990", "412345", "4"),  # no account id
        _card(None, "C010", "9995", "412345", "4"),  # no account id, another chunk
        _card("A980", "C015", "9991", "41234", "4"),  # bad iin
        _card("A980", "C015", "9992", "412345", "4"),
        _card("A980", "C015", "9992", "412345", "4"),  # same card twice
        _card("A960", None, "9993", "412345", "4"),  # no holder
        _card("A970", "C012", "9994", "412345", "4"),
    ]
    return rows


def chunked(extract: Extract, partitions: int) -> Validation:
    parts = [
        validate_extract(chunk, scope) for chunk, scope in chunks_in_memory(extract, partitions)
    ]
    return combine_validations(parts)


@pytest.mark.parametrize("partitions", [1, 2, 3, 5, 8, 40])
def test_chunks_validate_exactly_like_the_whole_extract(partitions: int) -> None:
    extract = extract_of(messy_rows())
    whole = validate_extract(extract)
    parts = [validate_extract(c, s) for c, s in chunks_in_memory(extract, partitions)]
    combined = combine_validations(parts)
    assert_same_validation(whole, combined)
    assert documents_of(combined) == documents_of(whole)
    # the case is not trivial: problems of every kind, joint rows valid in some chunk
    assert whole.orphan_accounts >= 2 and whole.orphan_cards >= 2
    assert {"cards.sourceCustomerId:holder_of_account", "accounts.sourceAccountId:unique"} <= set(
        whole.held_back_by_reason
    )
    if partitions >= 3:
        assert any(len(p.shared_valid_rows.get("accounts", [])) for p in parts)


def test_every_row_is_counted_by_exactly_one_chunk() -> None:
    extract = extract_of(messy_rows())
    parts = [validate_extract(c, s) for c, s in chunks_in_memory(extract, 5)]
    for table in ("customers", "accounts", "cards"):
        assert sum(p.rows_read[table] for p in parts) == len(extract.table(table))
    # a joint account travels to several chunks but is reported by one
    reported = [r for p in parts for r in p.rejects.itertuples() if r.id == "A990"]
    assert len(reported) == 1


def test_a_joint_account_is_valid_for_its_valid_holder_in_another_chunk() -> None:
    rows = raw_rows()
    rows["customers"] = [_customer("C001"), _customer("C002", country="XX")]
    rows["accounts"] = [_account("A1", "C001", "C001|C002")]
    rows["cards"] = [_card("A1", "C002", "1234", "412345", "4")]
    extract = extract_of(rows)
    whole = validate_extract(extract)
    partitions = next(p for p in range(2, 50) if _split(extract, p))
    combined = chunked(extract, partitions)
    assert_same_validation(whole, combined)
    assert combined.rows_valid == {"customers": 1, "accounts": 1, "cards": 1}


def _split(extract: Extract, partitions: int) -> bool:
    """C001 and C002 land in different chunks."""
    hashes = id_hashes(pa.array(["C001", "C002"], pa.large_string()))
    return len(set((hashes % np.uint64(partitions)).tolist())) == 2


def test_a_hash_collision_is_caught_not_believed() -> None:
    # the index claims an absent holder is present: its own chunk notices
    ids = pa.array(["C404"], pa.large_string())
    hashes = id_hashes(ids)
    scope = ChunkScope(int(hashes[0] % np.uint64(3)), 3, np.sort(hashes))
    with pytest.raises(HashCollision):
        scope.present_elsewhere(ids, np.array([False]))
    other = ChunkScope((int(hashes[0] % np.uint64(3)) + 1) % 3, 3, np.sort(hashes))
    assert other.present_elsewhere(ids, np.array([False])).tolist() == [True]


# --- random small extracts -------------------------------------------------------------------

_IDS = ["C1", "C2", "C3", "C4", "C5", "C6", " C1", "C2 ", "C7"]
_ACCOUNTS = ["A1", "A2", "A3", "A4", "A5", " A1", None]


@st.composite
def extracts(draw: st.DrawFn) -> Rows:
    customer_ids = draw(st.lists(st.sampled_from([*_IDS[:6], None]), max_size=8))
    holders = st.sampled_from(_IDS)
    customers = [
        _customer(cid, country=draw(st.sampled_from(["US", "US", "US", "XX"])))
        for cid in customer_ids
    ]
    accounts = []
    for _ in range(draw(st.integers(0, 7))):
        listed = draw(st.lists(holders, max_size=3))
        primary = draw(st.one_of(st.none(), holders))
        accounts.append(
            _account(
                draw(st.sampled_from(_ACCOUNTS)),
                primary,
                "|".join(h for h in listed if h) or None,
                status=draw(st.sampled_from(["OPEN", "OPEN", "OPEN", "SHUT"])),
            )
        )
    cards = []
    for number in range(draw(st.integers(0, 9))):
        cards.append(
            _card(
                draw(st.sampled_from(_ACCOUNTS)),
                draw(st.one_of(st.none(), holders)),
                draw(st.sampled_from([f"{number:04d}", "0000", "12x4"])),
                "412345",
                "4",
            )
        )
    return {"customers": customers, "accounts": accounts, "cards": cards}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=extracts(), partitions=st.integers(1, 6))
def test_random_extracts_validate_the_same_in_chunks(rows: Rows, partitions: int) -> None:
    extract = extract_of(rows)
    whole = validate_extract(extract)
    assert_same_validation(whole, chunked(extract, partitions))


def test_a_card_without_an_account_id_links_to_no_account() -> None:
    # not to an account row that lacks an id too: both are reported as missing their id
    rows = raw_rows()
    rows["accounts"].append(_account(None, "C995", None))
    rows["cards"].append(_card(None, "C001", "4321", "412345", "4"))
    whole = validate_extract(extract_of(rows))
    card_rules = set(whole.rejects.loc[whole.rejects["table"] == "cards", "rule"])
    assert card_rules == {"required"}
