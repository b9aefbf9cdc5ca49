"""The links between the three tables, checked in bulk (Arrow hash joins, no row loop).

* every account has at least one holder in the customers table (else an orphan account);
* every card's account is in the accounts table, and is not itself an orphan (else an
  orphan card);
* a card's holder is one of its account's holders.

(That the primary holder is among the holders is a rule of one account row: see
``customer_sync.schemas.extracts.AccountExtract``.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas.columns import TEXT_DTYPE, as_arrow, split_list_cells
from customer_sync.transforms.failures import failures_frame
from customer_sync.transforms.normalise import quoted

LINK_RULES: Final = {
    "orphan_account": "no holder of this account is in the customers table (orphan account)",
    "orphan_card": "the card's account is missing or an orphan (orphan card)",
    "holder_of_account": "the card's holder is not a holder of its account",
}
"""The rules of this module, with descriptions that hold no values."""

_KEY_SEPARATOR: Final = "\x1f"


@dataclass(frozen=True)
class Holdings:
    """Every (account row, holder id) pair of the accounts table."""

    account: npt.NDArray[np.int64]
    """Position of the account row."""
    account_id: pa.Array
    holder: pa.Array


@dataclass(frozen=True)
class Links:
    """The link failures, and which rows they make orphans."""

    failures: pd.DataFrame
    orphan_accounts: npt.NDArray[np.bool_]
    orphan_cards: npt.NDArray[np.bool_]
    card_account: npt.NDArray[np.int64]
    """Per card: position of its account row (the first with its id), -1 when there is none."""
    holder_customer: npt.NDArray[np.int64]
    """Per holding (``Holdings``): position of the holder's customer row (the first with its
    id), -1 when the holder is not in the customers table."""


def holdings_of(accounts: pd.DataFrame) -> Holdings:
    """The holders of every account row, one pair per listed holder."""
    positions, holders = split_list_cells(accounts["sourceCustomerIds"])
    account_ids = as_arrow(accounts["sourceAccountId"]).take(pa.array(positions))
    return Holdings(account=positions, account_id=account_ids, holder=holders)


def link_failures(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    holdings: Holdings,
    elsewhere: Callable[[pa.Array, npt.NDArray[np.bool_]], npt.NDArray[np.bool_]] | None = None,
) -> Links:
    """Orphan accounts, orphan cards and cards whose holder is not on their account.

    ``elsewhere(ids, found_here)`` says which holders are customers outside ``customers``
    (when these frames are one chunk of a bigger extract; see ``customer_sync.chunking.routing``).
    """
    customer_ids = as_arrow(customers["sourceCustomerId"])
    found_holder = pc.index_in(holdings.holder, value_set=customer_ids)
    known = np.asarray(found_holder.is_valid(), dtype=bool)
    if elsewhere is not None:
        known = known | elsewhere(holdings.holder, known)
    with_holder = np.zeros(len(accounts), dtype=bool)
    with_holder[holdings.account[known]] = True
    orphan_accounts = ~with_holder

    # each card's account row (the first one carrying its id: duplicates fail on their own);
    # a card without an account id has no account (not one of the accounts without an id)
    card_accounts = as_arrow(cards["sourceAccountId"])
    card_holders = as_arrow(cards["sourceCustomerId"])
    found = pc.index_in(
        card_accounts, value_set=as_arrow(accounts["sourceAccountId"]), skip_nulls=True
    )
    exists = np.asarray(found.is_valid(), dtype=bool)
    account_of = np.asarray(found.fill_null(0), dtype=np.int64)
    missing_account = cards["sourceAccountId"].notna().to_numpy() & ~exists
    orphaned_account = exists & orphan_accounts[account_of] if len(accounts) else exists
    orphan_cards = missing_account | orphaned_account

    # most cards belong to their account's primary holder: only the others need the pairs.
    # (An account that does not list its primary fails primary_among_holders by itself.)
    primaries = as_arrow(accounts["primarySourceCustomerId"])
    primary_of_card = primaries.take(pa.array(account_of)) if len(accounts) else card_holders
    is_primary = np.asarray(pc.equal(card_holders, primary_of_card).fill_null(False), dtype=bool)
    has_holder = cards["sourceCustomerId"].notna().to_numpy()
    unsure = np.flatnonzero(exists & has_holder & ~is_primary)
    on_account = np.ones(len(cards), dtype=bool)
    if len(unsure):
        # first the holders of the card's own account row (a few holdings per card, no
        # hashing); only a card not found there is looked up by key among every holding
        # (another row may carry the same account id)
        listed = _on_account_row(unsure, account_of, card_holders, holdings, len(accounts))
        on_account[unsure] = listed
        rest = unsure[~listed]
        if len(rest):
            subset = pa.array(rest)
            pairs = _keys(holdings.account_id, holdings.holder)
            card_keys = _keys(card_accounts.take(subset), card_holders.take(subset))
            on_account[rest] = np.asarray(pc.is_in(card_keys, value_set=pairs), dtype=bool)
    strangers = exists & has_holder & ~on_account

    failures = [
        failures_frame(
            "accounts",
            np.flatnonzero(orphan_accounts),
            "sourceCustomerIds",
            "orphan_account",
            LINK_RULES["orphan_account"],
        ),
        _card_failures(
            cards,
            missing_account,
            "sourceAccountId",
            "orphan_card",
            lambda c: (
                "sourceAccountId "
                + quoted(c["sourceAccountId"])
                + " is not in the accounts table (orphan card)"
            ),
        ),
        _card_failures(
            cards,
            orphaned_account,
            "sourceAccountId",
            "orphan_card",
            lambda c: (
                "account "
                + quoted(c["sourceAccountId"])
                + " has no holder in the customers table (orphan card)"
            ),
        ),
        _card_failures(
            cards,
            strangers,
            "sourceCustomerId",
            "holder_of_account",
            lambda c: (
                "sourceCustomerId "
                + quoted(c["sourceCustomerId"])
                + " is not a holder of account "
                + quoted(c["sourceAccountId"])
            ),
        ),
    ]
    return Links(
        failures=pd.concat(failures, ignore_index=True),
        orphan_accounts=orphan_accounts,
        orphan_cards=orphan_cards,
        card_account=np.where(exists, account_of, -1),
        holder_customer=np.asarray(found_holder.fill_null(-1), dtype=np.int64),
    )


def _on_account_row(
    cards: npt.NDArray[np.int64],
    account_of: npt.NDArray[np.int64],
    card_holders: pa.Array,
    holdings: Holdings,
    accounts: int,
) -> npt.NDArray[np.bool_]:
    """Per card (positions ``cards``): its holder is listed on its account row."""
    # holdings come in account row order: each row's holders are one contiguous run
    counts = np.bincount(holdings.account, minlength=accounts)
    starts = np.cumsum(counts) - counts
    rows = account_of[cards]
    runs = counts[rows]
    card = np.repeat(np.arange(len(cards)), runs)
    within = np.arange(len(card)) - np.repeat(np.cumsum(runs) - runs, runs)
    holding = starts[rows][card] + within
    same = pc.equal(
        holdings.holder.take(pa.array(holding)), card_holders.take(pa.array(cards[card]))
    )
    listed = np.zeros(len(cards), dtype=bool)
    listed[card[np.asarray(same.fill_null(False), dtype=bool)]] = True
    return listed


def _keys(account_ids: pa.Array, holder_ids: pa.Array) -> pa.Array:
    """One text key per (account, holder) pair (null when either is missing)."""
    separator = pa.scalar(_KEY_SEPARATOR, pa.large_string())
    return pc.binary_join_element_wise(account_ids, holder_ids, separator)


def _card_failures(
    cards: pd.DataFrame,
    mask: npt.NDArray[np.bool_],
    column: str,
    rule: str,
    reason: object,
) -> pd.DataFrame:
    where = np.flatnonzero(mask)
    if not len(where):  # the usual case: no reasons to write
        return failures_frame("cards", where, column, rule, "")
    rows = cards.iloc[where]
    text = reason(rows) if callable(reason) else pd.Series([], dtype=TEXT_DTYPE)
    return failures_frame("cards", where, column, rule, text)
