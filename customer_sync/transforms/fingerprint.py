"""A fingerprint of what would be sent for each customer, to tell changed customers apart.

The fingerprint of a customer is a 128-bit hash (32 hex characters) of its document as
``customer_sync.transforms.nest`` would build it, taken so that it is **stable**:

* it hashes the JSON text that would go out (``transforms.fast_nest``), field by field in
  the partner's order, after the value rules of nest; so it does not depend on dtypes
  (pandas ``str`` or ``object``, ``Int64`` or ``int64``, dictionary-encoded), on CSV vs
  Parquet, or on how a missing optional value was written (NA, empty, absent column);
* date-times and list cells are hashed as normalised (``transforms.normalise`` has already
  put every date in one UTC form and sorted list cells), so neither does the input's way
  of writing them;
* it does not depend on row order: every card's row hash is summed (mod 2**64, per 64-bit
  lane) into its account, every account's hash into each of its holders; a sum does not
  depend on order, and each level's result goes through a finaliser (splitmix64) so sums
  of different trees do not line up. ``_row`` and extra columns are never hashed.

It changes when any field that is sent changes: a customer's own fields, any field of any
of its accounts (a joint account's holder list included, so all co-holders change
together), any field of any card under them, or an account or card added or removed.
It does not change when only the order of accounts or cards changes, which the partner
does not give meaning to.

``fingerprinted_documents`` gives the documents and their fingerprints together, sharing
the JSON pieces both are made of.

Row hashes are SipHash-2-4 (``pandas.util.hash_array``) of the JSON text, with two
keys for two independent 64-bit lanes. The keys carry ``FINGERPRINT_VERSION``: bump it
whenever the fingerprint of an unchanged customer could change (a new field, another value
rule, another hash), and the ledger will see every customer as changed once.
"""

from __future__ import annotations

from typing import Final, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from customer_sync.schemas import contract
from customer_sync.transforms.fast_nest import (
    DEFAULT_CHUNK_ROWS,
    CustomerDocuments,
    DocumentArrays,
    Holdings,
    Keys,
    account_fields_json,
    account_holdings,
    account_json,
    account_keys,
    card_json,
    cards_per_account,
    customer_fields_json,
    document_array,
    document_chunks,
    text_column,
)

FINGERPRINT_VERSION: Final = 1
"""Bump when the fingerprint of an unchanged customer could change."""

# SipHash keys are 16 characters; one per 64-bit lane.
_HASH_KEYS: Final = tuple(f"cs-fp-v{FINGERPRINT_VERSION:07d}-{lane}" for lane in "ab")
# Separate the levels of the tree, so a card's sum can never stand in for an account's.
_CARD_LEVEL: Final = np.uint64(0x243F6A8885A308D3)
_ACCOUNT_LEVEL: Final = np.uint64(0x13198A2E03707344)
_HEX_DIGITS: Final = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

Hashes = npt.NDArray[np.uint64]  # shape (rows, 2): two 64-bit lanes


def customer_fingerprints(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> pd.Series:
    """Fingerprint (32 hex characters) of each row of ``customers``, indexed by its id."""
    ids = text_column(customers, "customers", "sourceCustomerId")
    return _fingerprints(
        ids,
        card_json(cards),
        account_fields_json(accounts),
        customer_fields_json(customers),
        account_keys(accounts, cards),
        account_holdings(accounts, ids),
    )


def fingerprinted_documents(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[CustomerDocuments, pd.Series]:
    """``customer_document_bytes`` and ``customer_fingerprints`` of the same frames, at once.

    Both are made of the same JSON pieces, so building them together does that work once
    (measured at 1M customers: 10-25% less CPU than calling the two).
    """
    arrays, fingerprints = fingerprinted_document_arrays(
        customers, accounts, cards, chunk_rows=chunk_rows
    )
    documents = CustomerDocuments(
        customer_ids=arrays.customer_ids.to_pylist(),
        documents=arrays.documents.to_numpy(zero_copy_only=False).tolist(),
    )
    return documents, _fingerprint_series(arrays.customer_ids, fingerprints)


def fingerprinted_document_arrays(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[DocumentArrays, pa.StringArray]:
    """``fingerprinted_documents`` as Arrow arrays, aligned with ``customers``' rows: the
    documents (JSON bytes) and each one's fingerprint. No Python object per customer."""
    ids = text_column(customers, "customers", "sourceCustomerId")
    account_ids = account_keys(accounts, cards)
    cards_json = card_json(cards)
    account_fields = account_fields_json(accounts)
    customer_fields = customer_fields_json(customers)
    holdings = account_holdings(accounts, ids)
    hashes = _fingerprint_hashes(cards_json, account_fields, customer_fields, account_ids, holdings)
    accounts_json = account_json(
        account_fields, cards_per_account(cards_json, account_ids), account_ids
    )
    del cards_json, account_fields  # no longer needed: let the documents have the memory
    chunks = document_chunks(customer_fields, accounts_json, holdings, chunk_rows)
    return DocumentArrays(ids, document_array(chunks)), _hex_array(hashes)


def _fingerprints(
    ids: pa.LargeStringArray,
    cards_json: pa.Array,
    account_fields: pa.Array,
    customer_fields: pa.Array,
    account_ids: Keys,
    holdings: Holdings,
) -> pd.Series:
    hashes = _fingerprint_hashes(cards_json, account_fields, customer_fields, account_ids, holdings)
    return _fingerprint_series(ids, _hex_array(hashes))


def _fingerprint_series(ids: pa.LargeStringArray, fingerprints: pa.StringArray) -> pd.Series:
    return pd.Series(
        fingerprints.to_numpy(zero_copy_only=False).astype(str),
        index=pd.Index(ids.to_pandas(), name=contract.ID_COLUMNS["customers"][0]),
        name="fingerprint",
        dtype="str",
    )


def _fingerprint_hashes(
    cards_json: pa.Array,
    account_fields: pa.Array,
    customer_fields: pa.Array,
    account_ids: Keys,
    holdings: Holdings,
) -> Hashes:
    card_sums = _group_sums(_row_hashes(cards_json), account_ids.reference_keys, account_ids.size)
    account_hashes = _combined(
        _row_hashes(account_fields), card_sums[account_ids.row_keys], _CARD_LEVEL
    )
    account_sums = _group_sums(
        account_hashes[holdings.account_rows], holdings.customer_keys, holdings.customers.size
    )
    return _combined(
        _row_hashes(customer_fields), account_sums[holdings.customers.row_keys], _ACCOUNT_LEVEL
    )


def _row_hashes(texts: pa.Array) -> Hashes:
    """Two independent 64-bit SipHashes of each text (of its UTF-8 bytes)."""
    # bytes objects, not str: SipHash reads them as they are, without decoding and
    # re-encoding every row (and the hash is the same as for the str)
    values = texts.cast(pa.large_binary()).to_numpy(zero_copy_only=False)
    return np.column_stack(
        [pd.util.hash_array(values, hash_key=key, categorize=False) for key in _HASH_KEYS]
    )


def _group_sums(hashes: Hashes, keys: npt.NDArray[np.int64], n_groups: int) -> Hashes:
    """Per group ``0..n_groups-1``, the sum mod 2**64 of its rows' hashes, lane by lane;
    ``(0, 0)`` for a group without rows; rows with key -1 belong to no group."""
    sums = np.zeros((n_groups, 2), dtype=np.uint64)
    belongs = keys >= 0
    np.add.at(sums, keys[belongs], hashes[belongs])  # uint64 arithmetic wraps: mod 2**64
    return sums


def _combined(own: Hashes, children: Hashes, level: np.uint64) -> Hashes:
    """A node's hash from its own fields' hash and the sum of its children's hashes."""
    return _splitmix64(own ^ _splitmix64(children + level))


def _splitmix64(values: Hashes) -> Hashes:
    """The splitmix64 finaliser: every input bit affects every output bit."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: Hashes = z ^ (z >> np.uint64(31))
    return mixed


def _hex_array(hashes: Hashes) -> pa.StringArray:
    """Each row's two lanes as 32 lower-case hex characters (lane a first, big-endian),
    written straight into an Arrow string array's buffers."""
    rows = len(hashes)
    raw = np.ascontiguousarray(hashes.astype(">u8")).view(np.uint8).reshape(rows, 16)
    digits = np.empty((rows, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX_DIGITS[raw >> 4]
    digits[:, 1::2] = _HEX_DIGITS[raw & 0x0F]
    offsets = np.arange(0, 32 * rows + 1, 32, dtype=np.int32)
    return cast(
        pa.StringArray,
        pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(digits)),
    )
