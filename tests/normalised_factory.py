"""Tiny normalised frames for tests of nest, fast nest and fingerprints (not a fixture module).

Rows are dicts with valid defaults that a test overrides by keyword; ``frames`` turns them
into frames with the dtypes of docs/ARCHITECTURE.md, "Normalised frames": text columns in
pandas' ``str`` dtype (NA where missing), ``networkIdentifier`` ``Int64``, ``_row`` 1-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pandas as pd

from customer_sync.schemas import contract

DATE = "2024-01-02T03:04:05Z"
LATER = "2025-06-07T08:09:10Z"

# Characters that JSON escaping cares about, and some that it must leave alone.
AWKWARD = ['"', "\\", "\x00", "\x08", "\x0b", "\x1f", "\x7f", "\n", "é", "\u2028", "😀", "|", ""]

Row = dict[str, Any]
Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def customer(customer_id: str, **fields: Any) -> Row:
    """A valid customer row (no parent, opted in to all alerts)."""
    row: Row = {
        "sourceCustomerId": customer_id,
        "sourceParentCustomerId": None,
        "organizationId": "50004",
        "postalCode": "01234",
        "country": "US",
        "customerCreationDate": DATE,
        "enrollmentStartDate": DATE,
        "enrollmentEndDate": None,
        "enrollmentOptInStatus": "ACTIVE",
        "alertOptInStatus": "ALL",
        "targetingIndicator": "TARGET",
    }
    return {**row, **fields}


def account(account_id: str, *holders: str, **fields: Any) -> Row:
    """A valid open account; the first holder is the primary one."""
    row: Row = {
        "sourceAccountId": account_id,
        "sourceCustomerIds": contract.LIST_SEPARATOR.join(holders),
        "primarySourceCustomerId": holders[0],
        "status": "OPEN",
        "type": "CRD",
        "sourcePortfolioId": "PF-1",
        "accountOpenDate": DATE,
        "accountCloseDate": None,
    }
    return {**row, **fields}


def card(account_id: str, customer_id: str, **fields: Any) -> Row:
    """A valid open Visa card of ``account_id`` held by ``customer_id``."""
    row: Row = {
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
    return {**row, **fields}


def frame(table: str, rows: Sequence[Row]) -> pd.DataFrame:
    """One normalised table from rows (columns not given in a row are missing there)."""
    columns = list(contract.COLUMNS[table])
    extra = [name for row in rows for name in row if name not in columns]
    data: dict[str, Any] = {}
    for name in [*columns, *dict.fromkeys(extra)]:
        values = [row.get(name) for row in rows]
        if name == "networkIdentifier":
            data[name] = pd.array(values, dtype="Int64")
        else:
            data[name] = pd.Series(values, dtype="str")
    result = pd.DataFrame(data, index=pd.RangeIndex(len(rows)))
    result[contract.ROW_COLUMN] = np.arange(1, len(rows) + 1, dtype=np.int64)
    return result


def frames(
    customers: Sequence[Row] = (), accounts: Sequence[Row] = (), cards: Sequence[Row] = ()
) -> Frames:
    """Normalised customers, accounts and cards frames."""
    return frame("customers", customers), frame("accounts", accounts), frame("cards", cards)


def shuffled(frames_: Frames, seed: int) -> Frames:
    """The same frames with the rows of each in another order (``_row`` travels along)."""
    rng = np.random.default_rng(seed)
    return tuple(  # type: ignore[return-value]
        part.iloc[rng.permutation(len(part))].reset_index(drop=True) for part in frames_
    )


def household() -> Frames:
    """Three customers, one joint account of c1 and c2 (and c9, who is not in the extract),
    one own account each for c1 and c3, c2 holding nothing else."""
    return frames(
        customers=[customer("c1"), customer("c2"), customer("c3")],
        accounts=[
            account("a-own-1", "c1"),
            account("a-joint", "c1", "c2", "c9"),
            account("a-own-3", "c3"),
        ],
        cards=[
            card("a-joint", "c2", last4="0002"),
            card("a-own-1", "c1"),
            card("a-joint", "c1", last4="0001"),
            card("a-own-3", "c3"),
        ],
    )


# --- hypothesis strategies ----------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=6) | st.sampled_from(AWKWARD)
maybe_texts = st.none() | texts


def _rows(draw: st.DrawFn, fields: tuple[str, ...], base: Row) -> Row:
    row = dict(base)
    for name in fields:
        if name not in row:
            row[name] = draw(maybe_texts)
    return row


@st.composite
def normalised_inputs(draw: st.DrawFn, unique_customer_ids: bool = False) -> Frames:
    """Arbitrary frames: awkward text anywhere, nulls, empty lists, random joint accounts,
    orphans, holders outside the extract, and (sometimes) repeated ids."""
    customer_ids = draw(st.lists(texts, max_size=5, unique=unique_customer_ids))
    outsiders = draw(st.lists(texts, max_size=2))
    holders_pool = st.sampled_from(customer_ids + outsiders) if customer_ids + outsiders else texts

    customers: list[Row] = [
        _rows(draw, contract.CUSTOMER_COLUMNS, {"sourceCustomerId": cid}) for cid in customer_ids
    ]
    accounts: list[Row] = []
    for account_id in draw(st.lists(texts, max_size=5)):
        holders = draw(st.lists(holders_pool, min_size=1, max_size=3))
        listed = draw(
            st.sampled_from(["joined", "none", "empty", "raw"])
        )  # how sourceCustomerIds is written
        base: Row = {
            "sourceAccountId": account_id,
            "primarySourceCustomerId": holders[0],
            "sourceCustomerIds": {
                "joined": contract.LIST_SEPARATOR.join(holders),
                "none": None,
                "empty": "",
                "raw": draw(maybe_texts),
            }[listed],
        }
        accounts.append(_rows(draw, contract.ACCOUNT_COLUMNS, base))
    account_ids = [row["sourceAccountId"] for row in accounts] + ["orphan"]
    cards: list[Row] = [
        _rows(
            draw,
            contract.CARD_COLUMNS,
            {
                "sourceAccountId": draw(st.sampled_from(account_ids)),
                "sourceCustomerId": draw(holders_pool),
                "networkIdentifier": draw(st.none() | st.integers(-(2**63), 2**63 - 1)),
            },
        )
        for _ in range(draw(st.integers(0, 8)))
    ]
    return frames(customers, accounts, cards)
