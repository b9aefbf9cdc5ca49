"""The partner's Customer documents, built the plain way: one dict per customer, account, card.

This is the readable reference of nesting (``transforms.fast_nest`` must produce the same
bytes, faster). Its input is the *normalised* frames of docs/ARCHITECTURE.md: date-times
already ``YYYY-MM-DDTHH:MM:SSZ`` text, list fields ``|``-joined text, ``networkIdentifier``
an integer column, everything else text. ``_row`` and any other extra column are ignored.

The value rules below are shared with ``fast_nest`` and ``fingerprint``:

* a missing value (NA) goes out as JSON ``null``;
* in an optional column (``schemas.contract.OPTIONAL_COLUMNS``) empty text counts as missing,
  and an absent optional column as all missing;
* ``sourceParentCustomerId`` and ``redemptionEligibility`` are left out of the document
  when missing (so an extract without the optional ``redemptionEligibility`` column sends
  exactly the documents it sent before the field existed);
* a list field is split on ``|``; empty or missing text is ``[]``, except that missing
  ``sourceCustomerIds`` means the primary holder alone;
* ``networkIdentifier`` goes out as an integer;
* an account goes under each distinct holder once, even if a holder is listed twice.

A required column that is absent is a ``ValueError`` naming it; a column holding something
other than text (or integers, for ``networkIdentifier``) is a ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pandas as pd

from customer_sync.schemas import contract

Document = dict[str, object]
Record = dict[str, Any]

# Fields left out of the document (instead of sent as null) when they have no value.
# DECISION (schemas.contract.REDEMPTION_ELIGIBILITIES): redemptionEligibility too, so a
# customer without one (absent column, or an empty cell) gets the very document, and
# fingerprint, it had before the field existed.
OMITTED_WHEN_MISSING: frozenset[str] = frozenset(
    {"sourceParentCustomerId", "redemptionEligibility"}
)
# Fields sent as JSON integers; every other scalar field is a JSON string.
INTEGER_FIELDS: frozenset[str] = frozenset({"networkIdentifier"})
# Fields sent as JSON arrays of strings (``|``-joined text in the frames).
LIST_FIELDS: frozenset[str] = frozenset(
    name for names in contract.LIST_COLUMNS.values() for name in names
)


def customer_documents(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> list[Document]:
    """One Customer document per row of ``customers``, in frame order, as the partner wants it.

    A customer's accounts are every account listing it among ``sourceCustomerIds``, in
    ``accounts`` order; an account's cards are the cards naming its ``sourceAccountId``, in
    ``cards`` order. A joint account appears, identical, under every holder present in
    ``customers``; holders absent from ``customers`` get no document. Every document is an
    independent tree (no dict or list is shared between documents).
    """
    cards_by_account: dict[str | None, list[Record]] = {}
    for card in records(cards, "cards"):
        cards_by_account.setdefault(card["sourceAccountId"], []).append(card)

    holdings: dict[str | None, list[Record]] = {}
    for account in records(accounts, "accounts"):
        # dict.fromkeys: a holder listed twice still gets the account once
        for holder in dict.fromkeys(account["sourceCustomerIds"]):
            holdings.setdefault(holder, []).append(account)

    return [
        _customer_document(
            customer,
            [
                _account_document(account, cards_by_account.get(account["sourceAccountId"], []))
                for account in holdings.get(customer["sourceCustomerId"], [])
            ],
        )
        for customer in records(customers, "customers")
    ]


def serialise_document(document: Document) -> bytes:
    """The canonical JSON bytes of one document: what is sent, and what others compare with."""
    return orjson.dumps(document)


def records(frame: pd.DataFrame, table: str) -> Iterator[Record]:
    """The rows of one normalised table as dicts of its contract columns, values as sent.

    Missing values are ``None``, list fields are lists, ``networkIdentifier`` is an ``int``.
    """
    columns = contract.COLUMNS[table]
    values = [_column_values(frame, table, name) for name in columns]
    for row in zip(*values, strict=True):
        yield dict(zip(columns, row, strict=True))


def required_column(frame: pd.DataFrame, table: str, name: str) -> pd.Series:
    """A contract column of ``frame``; an error naming it when a required one is absent."""
    if name not in frame.columns:
        if name in contract.OPTIONAL_COLUMNS[table]:
            return pd.Series([None] * len(frame), index=frame.index, dtype=object)
        raise ValueError(f"the {table} frame has no {name!r} column")
    column: pd.Series = frame[name]
    return column


def _column_values(frame: pd.DataFrame, table: str, name: str) -> list[Any]:
    """One column's values as they are sent (the rules in this module's docstring)."""
    column = required_column(frame, table, name).astype(object)
    missing = column.isna()
    if name in contract.OPTIONAL_COLUMNS[table]:
        missing |= column.eq("")
    if name == "sourceCustomerIds":  # none listed: the primary holder alone
        primary = required_column(frame, table, "primarySourceCustomerId").astype(object)
        column, missing = column.where(~missing, primary), missing & primary.isna()

    kind = pd.api.types.infer_dtype(column[~missing], skipna=True)
    if name in INTEGER_FIELDS:
        if kind not in ("integer", "empty"):
            raise TypeError(f"{name} must hold integers, not {kind}")
        return [
            None if absent else int(value) for value, absent in zip(column, missing, strict=True)
        ]
    if kind not in ("string", "empty"):
        raise TypeError(f"{name} must be text, not {kind}")
    values = column.where(~missing, None).tolist()
    if name in LIST_FIELDS:
        return [value.split(contract.LIST_SEPARATOR) if value else [] for value in values]
    return values


def _customer_document(customer: Record, accounts: list[Document]) -> Document:
    # records hold the contract columns in the partner's order; accounts come last
    document: Document = {**customer, "accounts": accounts}
    document["alertOptInStatus"] = list(customer["alertOptInStatus"])
    for name in OMITTED_WHEN_MISSING:
        if document[name] is None:
            del document[name]
    return document


def _account_document(account: Record, cards: list[Record]) -> Document:
    return {
        **account,
        "sourceCustomerIds": list(account["sourceCustomerIds"]),
        "cards": [dict(card) for card in cards],
    }
