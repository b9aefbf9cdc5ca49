"""The partner's Customer documents as JSON bytes, built column by column with pyarrow.

Byte for byte the same as ``orjson.dumps`` of ``transforms.nest.customer_documents`` (the
reference), without a Python object per field: every row's JSON text is concatenated by
``pyarrow.compute``, cards are grouped into their accounts and accounts into their holders
with list offsets and ``binary_join``. Values follow the rules written in ``transforms.nest``.

JSON string escaping is orjson's: ``"`` and ``\\`` are backslash-escaped, the control
characters U+0000..U+001F are written ``\\b \\f \\n \\r \\t`` or ``\\u00xx`` (lower-case
hex), everything else (DEL, non-ASCII) goes out as raw UTF-8. Columns are scanned as bytes
first, so the escaping work is only done for the few values that need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas import contract
from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.transforms.nest import (
    INTEGER_FIELDS,
    LIST_FIELDS,
    OMITTED_WHEN_MISSING,
    required_column,
)

_TEXT: Final = pa.large_string()
_NULL: Final = pa.scalar("null", _TEXT)
_EMPTY: Final = pa.scalar("", _TEXT)
_SHORT_ESCAPES: Final = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}

Indices = npt.NDArray[np.int64]

DEFAULT_CHUNK_ROWS: Final = 100_000
"""Customers per chunk of the last stage: bounds its intermediates to a few hundred MB."""


@dataclass(frozen=True)
class CustomerDocuments:
    """The serialised Customer documents: ``documents[i]`` is the JSON of ``customer_ids[i]``."""

    customer_ids: list[str]
    documents: list[bytes]

    def __len__(self) -> int:
        return len(self.documents)


@dataclass(frozen=True)
class DocumentArrays:
    """The serialised Customer documents as Arrow arrays: ``documents[i]`` (UTF-8 JSON
    bytes) is the document of ``customer_ids[i]``.

    What a prepared chunk carries from a worker to the spool: two buffers each, not a
    Python object per document, so sending it between processes and writing it to the
    spool are memory copies.
    """

    customer_ids: pa.LargeStringArray
    documents: pa.LargeBinaryArray

    def __len__(self) -> int:
        return len(self.documents)


@dataclass(frozen=True)
class Keys:
    """A table's ids numbered 0.. by first appearance, and the same numbers for references
    to them from elsewhere (cards to accounts, holders to customers).

    A null id is numbered like any other value (the reference groups ``None`` too).
    """

    size: int
    """How many distinct ids the table has."""
    row_keys: Indices
    """The key of each row's id; ``row_keys == arange(len)`` when the ids are unique."""
    reference_keys: Indices
    """The key of each reference; -1 where it names no row."""

    @classmethod
    def of(cls, ids: pa.LargeStringArray, references: pa.LargeStringArray) -> Keys:
        # one hash pass over both: ids first, so they take the numbers 0..size-1
        both = pc.dictionary_encode(pa.concat_arrays([ids, references]), null_encoding="encode")
        codes = np.asarray(both.indices.cast(pa.int64()), dtype=np.int64)
        row_keys, reference_keys = codes[: len(ids)], codes[len(ids) :]
        size = int(row_keys.max()) + 1 if len(ids) else 0
        return cls(
            size=size,
            row_keys=row_keys,
            reference_keys=np.where(reference_keys < size, reference_keys, -1),
        )

    @property
    def unique(self) -> bool:
        return self.size == len(self.row_keys)

    def per_row(self, per_key: pa.Array) -> pa.Array:
        """Values given per key, one per row (the same array when the ids are unique)."""
        return per_key if self.unique else per_key.take(self.row_keys)


@dataclass(frozen=True)
class Holdings:
    """Which account rows each customer holds, one pair per (customer, account), no repeats.

    Pairs are sorted by ``customer_keys`` (keys of ``customers``), and within one customer
    by account row, so grouping them keeps ``accounts`` order.
    """

    customers: Keys
    customer_keys: Indices
    account_rows: Indices


def customer_document_bytes(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> CustomerDocuments:
    """One serialised Customer document per row of ``customers``, in frame order.

    Documents are built ``chunk_rows`` customers at a time, which bounds the size of the
    intermediate arrays (the result is the same for any chunk size).
    """
    ids = text_column(customers, "customers", "sourceCustomerId")
    return CustomerDocuments(
        customer_ids=ids.to_pylist(),
        documents=document_bytes(_document_chunks(customers, accounts, cards, ids, chunk_rows)),
    )


def customer_document_texts(
    customers: pd.DataFrame, accounts: pd.DataFrame, cards: pd.DataFrame
) -> pa.LargeStringArray:
    """The JSON text of each customer's document, as one Arrow array in ``customers`` order."""
    ids = text_column(customers, "customers", "sourceCustomerId")
    chunks = list(_document_chunks(customers, accounts, cards, ids))
    return _as_text(pa.concat_arrays(chunks) if chunks else pa.array([], _TEXT))


def _document_chunks(
    customers: pd.DataFrame,
    accounts: pd.DataFrame,
    cards: pd.DataFrame,
    customer_ids: pa.LargeStringArray,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pa.LargeStringArray]:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    account_ids = account_keys(accounts, cards)
    order, sorted_keys = _group_order(account_ids.reference_keys)
    # as cards_per_account does, but the cards' JSON in row order is let go once sorted
    cards_joined = _joined_groups(_taken(card_json(cards), order), sorted_keys, account_ids.size)
    accounts_json = account_json(account_fields_json(accounts), cards_joined, account_ids)
    del cards_joined
    return document_chunks(
        customer_fields_json(customers),
        accounts_json,
        account_holdings(accounts, customer_ids),
        chunk_rows,
    )


# --- the building blocks (``transforms.fingerprint`` hashes the same pieces) ----------------


def account_keys(accounts: pd.DataFrame, cards: pd.DataFrame) -> Keys:
    """The accounts' ids numbered, and which account each card names."""
    return Keys.of(
        text_column(accounts, "accounts", "sourceAccountId"),
        text_column(cards, "cards", "sourceAccountId"),
    )


def cards_per_account(cards_json: pa.Array, account_ids: Keys) -> pa.LargeStringArray:
    """Per account key, the JSON of its cards joined by ``,`` in ``cards`` order."""
    order, sorted_keys = _group_order(account_ids.reference_keys)
    return _joined_groups(_taken(cards_json, order), sorted_keys, account_ids.size)


def account_json(
    account_fields: pa.Array, cards_joined: pa.Array, account_ids: Keys
) -> pa.LargeStringArray:
    """Each account row's complete JSON object: its fields, then its cards."""
    return _concat(account_fields, ',"cards":[', account_ids.per_row(cards_joined), "]}")


def document_chunks(
    customer_fields: pa.LargeStringArray,
    accounts_json: pa.LargeStringArray,
    holdings: Holdings,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pa.LargeStringArray]:
    """The documents' JSON, ``chunk_rows`` customers at a time (all at once if ids repeat)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    return _chunks(customer_fields, accounts_json, holdings, chunk_rows)


def _chunks(
    customer_fields: pa.LargeStringArray,
    accounts_json: pa.LargeStringArray,
    holdings: Holdings,
    chunk_rows: int,
) -> Iterator[pa.LargeStringArray]:
    keys = holdings.customers
    step = chunk_rows if keys.unique else max(len(customer_fields), 1)  # unique: key == row
    for start in range(0, len(customer_fields), step):
        stop = min(start + step, keys.size)
        lo, hi = np.searchsorted(holdings.customer_keys, [start, stop])
        per_key = _joined_groups(
            _taken(accounts_json, holdings.account_rows[lo:hi]),
            holdings.customer_keys[lo:hi] - start,
            stop - start,
        )
        rows = customer_fields.slice(start, step)
        yield _concat(
            rows, ',"accounts":[', per_key if keys.unique else keys.per_row(per_key), "]}"
        )


def document_array(chunks: Iterable[pa.LargeStringArray]) -> pa.LargeBinaryArray:
    """The documents of all chunks as one Arrow array of JSON bytes."""
    parts = [chunk.cast(pa.large_binary()) for chunk in chunks]
    joined = pa.concat_arrays(parts) if parts else pa.array([], pa.large_binary())
    return cast(pa.LargeBinaryArray, joined)


def document_bytes(chunks: Iterable[pa.LargeStringArray]) -> list[bytes]:
    """The documents of all chunks as ``bytes``, one chunk's worth of Arrow memory at a time."""
    documents: list[bytes] = []
    for chunk in chunks:
        # through numpy: about twice as fast as Array.to_pylist for large binaries
        documents += chunk.cast(pa.large_binary()).to_numpy(zero_copy_only=False).tolist()
    return documents


def card_json(cards: pd.DataFrame) -> pa.LargeStringArray:
    """The JSON object of each card row, complete."""
    return _concat(_fields_json(cards, "cards", contract.CARD_FIELDS), "}")


def account_fields_json(accounts: pd.DataFrame) -> pa.LargeStringArray:
    """Each account row's JSON object up to its cards; ``,"cards":[...]}`` completes it."""
    return _fields_json(accounts, "accounts", contract.ACCOUNT_COLUMNS)


def customer_fields_json(customers: pd.DataFrame) -> pa.LargeStringArray:
    """Each customer row's JSON object up to its accounts; ``,"accounts":[...]}`` completes it."""
    return _fields_json(customers, "customers", contract.CUSTOMER_COLUMNS)


def account_holdings(accounts: pd.DataFrame, customer_ids: pa.LargeStringArray) -> Holdings:
    """The (customer, account row) pairs: an account belongs to every holder it lists.

    Holders that are not among ``customer_ids`` are left out.
    """
    holder_lists = pc.split_pattern(holder_texts(accounts), contract.LIST_SEPARATOR)
    account_rows = np.asarray(pc.list_parent_indices(holder_lists), dtype=np.int64)
    keys = Keys.of(customer_ids, _as_text(pc.list_flatten(holder_lists)))
    held = keys.reference_keys >= 0
    customer_keys, account_rows = keys.reference_keys[held], account_rows[held]
    # stable: account rows come in ascending order, and stay so within each customer
    order = np.argsort(customer_keys, kind="stable")
    customer_keys, account_rows = customer_keys[order], account_rows[order]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] = (customer_keys[1:] == customer_keys[:-1]) & (
        account_rows[1:] == account_rows[:-1]
    )
    return Holdings(
        customers=keys,
        customer_keys=customer_keys[~repeated],
        account_rows=account_rows[~repeated],
    )


def holder_texts(accounts: pd.DataFrame) -> pa.LargeStringArray:
    """Each account's ``|``-joined holders; the primary holder alone when none are listed."""
    listed = text_column(accounts, "accounts", "sourceCustomerIds")
    primary = text_column(accounts, "accounts", "primarySourceCustomerId")
    holders = pc.coalesce(listed, primary)
    # '' for "no holders at all" (primary missing too): splits to [] below, like the reference
    return _as_text(pc.if_else(pc.equal(holders, _EMPTY), pa.scalar(None, _TEXT), holders))


def json_strings(values: pa.Array) -> pa.LargeStringArray:
    """Each value as a JSON string literal (quoted, escaped as orjson does), ``null`` if null."""
    quoted = _concat('"', _escaped(_as_text(values)), '"')
    return _as_text(pc.fill_null(quoted, _NULL))


def json_string_lists(values: pa.Array) -> pa.LargeStringArray:
    """Each ``|``-joined value as a JSON array of strings; ``[]`` when empty or null."""
    values = _as_text(values)
    nonempty = pc.if_else(pc.equal(values, _EMPTY), pa.scalar(None, _TEXT), values)
    escaped = _escaped(_as_text(nonempty))
    items = pc.binary_join(
        pc.split_pattern(escaped, contract.LIST_SEPARATOR), pa.scalar('","', _TEXT)
    )
    return _as_text(pc.fill_null(_concat('["', items, '"]'), pa.scalar("[]", _TEXT)))


def text_column(frame: pd.DataFrame, table: str, name: str) -> pa.LargeStringArray:
    """A text column as an Arrow array, missing values null, the rules of ``nest`` applied."""
    values = _arrow(required_column(frame, table, name))
    value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (
        pa.types.is_string(value_type)
        or pa.types.is_large_string(value_type)
        or pa.types.is_null(value_type)
    ):
        raise TypeError(f"{name} must be text, not {values.type}")
    text = _as_text(values.cast(_TEXT))
    if name in contract.OPTIONAL_COLUMNS[table]:
        text = _as_text(pc.if_else(pc.equal(text, _EMPTY), pa.scalar(None, _TEXT), text))
    return text


def _group_order(keys: Indices) -> tuple[Indices, Indices]:
    """The rows with a group (key >= 0) ordered by group, stably; and their sorted keys."""
    order = np.argsort(keys, kind="stable")
    order = order[keys[order] >= 0]
    return order, keys[order]


def _taken(values: pa.Array, rows: Indices) -> pa.Array:
    """``values.take(rows)``, without the copy when ``rows`` is a plain run (sorted extracts)."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return values.slice(int(rows[0]), len(rows))
    return values.take(rows)


def _joined_groups(texts: pa.Array, sorted_keys: Indices, n_groups: int) -> pa.LargeStringArray:
    """``texts`` already sorted by group key, joined by ``,`` per group."""
    offsets = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(sorted_keys, minlength=n_groups), out=offsets[1:])
    lists = pa.LargeListArray.from_arrays(pa.array(offsets), texts)
    return _as_text(pc.binary_join(lists, pa.scalar(",", _TEXT)))


def _fields_json(frame: pd.DataFrame, table: str, fields: tuple[str, ...]) -> pa.LargeStringArray:
    """``{"a":1,"b":2`` for each row: the fields in order, without the closing brace."""
    parts: list[pa.Array | str] = []
    for position, name in enumerate(fields):
        key = ("{" if position == 0 else ",") + orjson.dumps(name).decode() + ":"
        if name in OMITTED_WHEN_MISSING:
            value = text_column(frame, table, name)
            member = _concat(key, json_strings(value))
            parts.append(pc.if_else(pc.is_valid(value), member, _EMPTY))
        else:
            parts.extend([key, *_value_json(frame, table, name)])
    return _concat(*parts)


def _value_json(frame: pd.DataFrame, table: str, name: str) -> list[pa.Array | str]:
    """The JSON of one column's values, as parts to concatenate (quotes left to literals)."""
    if name in INTEGER_FIELDS:
        values = _arrow(required_column(frame, table, name))
        if not (pa.types.is_integer(values.type) or pa.types.is_null(values.type)):
            raise TypeError(f"{name} must be an integer, not {values.type}")
        return [_as_text(pc.fill_null(values.cast(pa.int64()).cast(_TEXT), _NULL))]
    if name == "sourceCustomerIds":
        return [json_string_lists(pc.fill_null(holder_texts(frame), _EMPTY))]
    if name in LIST_FIELDS:
        return [json_string_lists(text_column(frame, table, name))]
    text = text_column(frame, table, name)
    if text.null_count:
        return [json_strings(text)]
    return ['"', _escaped(text), '"']  # no nulls: the quotes join the literals around them


def _escaped(values: pa.LargeStringArray) -> pa.LargeStringArray:
    """JSON string contents (without quotes), escaped exactly as orjson escapes them."""
    if not _may_need_escaping(_value_bytes(values)):
        return values
    mask = pc.fill_null(pc.match_substring_regex(values, r'[\x00-\x1f"\\]'), False)
    escaped = _as_text(values.filter(mask))
    escaped = pc.replace_substring(escaped, "\\", "\\\\")  # first: later steps add backslashes
    escaped = pc.replace_substring(escaped, '"', '\\"')
    data = _value_bytes(escaped)
    for code in np.unique(data[data < 0x20]).tolist():
        replacement = _SHORT_ESCAPES.get(code, f"\\u{code:04x}")
        escaped = pc.replace_substring(escaped, chr(code), replacement)
    return _as_text(pc.replace_with_mask(values, mask, escaped))


def _may_need_escaping(data: npt.NDArray[np.uint8]) -> bool:
    """Whether any byte is a control character, '"' or '\\' (three cheap vectorised scans, the
    cheapest first: a few times faster than a lookup table over the bytes)."""
    return bool(
        len(data) and (data.min() < 0x20 or (data == ord('"')).any() or (data == ord("\\")).any())
    )


def _value_bytes(values: pa.LargeStringArray) -> npt.NDArray[np.uint8]:
    """The UTF-8 bytes of all values together (bytes < 0x80 never occur inside a multi-byte
    character, so ASCII can be found by byte)."""
    return cell_bytes(values).values


def _concat(*parts: pa.Array | pa.Scalar | str) -> pa.LargeStringArray:
    """Element-wise concatenation; a ``str`` part is the same literal on every row."""
    args: list[pa.Array | pa.Scalar] = []
    literal = ""
    for part in parts:
        if isinstance(part, str):
            literal += part  # adjacent literals become one: fewer parts, faster join
            continue
        if literal:
            args.append(pa.scalar(literal, _TEXT))
            literal = ""
        args.append(part)
    if literal:
        args.append(pa.scalar(literal, _TEXT))
    return _as_text(pc.binary_join_element_wise(*args, _EMPTY))


def _arrow(column: pd.Series) -> pa.Array:
    values = pa.array(column, from_pandas=True)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values


def _as_text(values: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != _TEXT:
        values = values.cast(_TEXT)
    assert isinstance(values, pa.LargeStringArray)
    return values
