"""Raw text frames -> normalised frames (docs/ARCHITECTURE.md, "Normalised frames").

Vectorised throughout (Arrow kernels and pandas, no Python loop over rows), and free of
state, so it runs the same on a whole table or on one chunk of it.

* every text cell is stripped of surrounding whitespace; empty cells become missing;
* date-times with any ISO-8601 offset (``Z``, ``+02:00``, ``+0200``, ``-05``) or none,
  with ``T`` or a space before the time, with or without seconds and fractions, and bare
  dates, become UTC ``YYYY-MM-DDTHH:MM:SSZ`` (fractions truncated). DECISION: a date-time
  without an offset, and a bare date, are taken as UTC. A value that is not one of these
  shapes, or not a real instant, is left as written for the schema's ``utc_datetime`` rule;
* list cells are canonical: items stripped, empty items dropped, sorted; alert statuses are
  also de-duplicated (a set), holders are not (a repeated holder is an error to report);
* an empty or missing ``sourceCustomerIds`` becomes the primary holder alone;
* ``networkIdentifier`` becomes ``Int64``; a value that is not an integer becomes missing
  and is reported as a parse problem (the only value normalising cannot keep as written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas import contract
from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.schemas.columns import TEXT_DTYPE, as_arrow, split_list_cells, text_series
from customer_sync.schemas.datetimes import normalised_datetimes
from customer_sync.transforms.card_shape import MASK, card_shaped

DATETIME_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "customers": ("customerCreationDate", "enrollmentStartDate", "enrollmentEndDate"),
    "accounts": ("accountOpenDate", "accountCloseDate"),
    "cards": ("openDate", "closeDate"),
}
"""The date-time columns of each table."""

PROBLEM_COLUMNS: Final = ("index", "column", "rule", "reason")

_INTEGER: Final = r"[+-]?[0-9]{1,18}"


@dataclass(frozen=True)
class NormalisedTable:
    """A normalised frame (fresh ``RangeIndex``) and the values normalising could not keep.

    ``problems`` has one row per problem: ``index`` (position in ``frame``), ``column``,
    ``rule`` and ``reason`` (the reason never holds a value of a sensitive column).
    """

    frame: pd.DataFrame
    problems: pd.DataFrame


def normalise_table(raw: pd.DataFrame, table: str) -> NormalisedTable:
    """The normalised form of one raw table (or one chunk of it)."""
    columns = contract.COLUMNS[table]
    optional = contract.OPTIONAL_COLUMNS[table]
    missing = [
        name
        for name in (*columns, contract.ROW_COLUMN)
        if name not in raw.columns and name not in optional
    ]
    if missing:
        raise ValueError(f"{table} frame lacks column(s): {', '.join(missing)}")
    index = pd.RangeIndex(len(raw))
    out: dict[str, pd.Series] = {}
    problems: list[pd.DataFrame] = []
    for name in columns:
        if name == "networkIdentifier":
            continue
        if name not in raw.columns:  # an optional column left out: all missing
            out[name] = pd.Series(np.nan, index=index, dtype=TEXT_DTYPE)
            continue
        out[name] = stripped_text(raw[name], index)
    for name in DATETIME_COLUMNS.get(table, ()):
        out[name] = utc_datetimes(out[name])
    for name in contract.LIST_COLUMNS[table]:
        # alert lists are sets of seven statuses: a few distinct cells, done once each
        alerts = name == "alertOptInStatus"
        out[name] = canonical_lists(out[name], dedupe=alerts, by_distinct=alerts)
    if table == "accounts":
        holders = out["sourceCustomerIds"]
        out["sourceCustomerIds"] = holders.mask(
            holders.eq("").to_numpy(), out["primarySourceCustomerId"]
        ).fillna("")
    if table == "cards":
        network, bad = integers(stripped_text(raw["networkIdentifier"], index))
        out["networkIdentifier"] = network
        if bad.any():
            where = np.flatnonzero(bad)
            shown = quoted(stripped_text(raw["networkIdentifier"], index).iloc[where])
            problems.append(
                _problems(
                    where,
                    "networkIdentifier",
                    "integer",
                    ("networkIdentifier " + shown + " is not an integer").to_numpy(),
                )
            )
    frame = pd.DataFrame({name: out[name] for name in columns}, index=index)
    frame[contract.ROW_COLUMN] = raw[contract.ROW_COLUMN].to_numpy(dtype=np.int64)
    found = (
        pd.concat(problems, ignore_index=True) if problems else _problems(np.array([]), "", "", "")
    )
    return NormalisedTable(frame=frame, problems=found)


def stripped_text(values: pd.Series, index: pd.Index) -> pd.Series:
    """Text with surrounding whitespace removed; empty or blank cells missing."""
    arrow = as_arrow(values.astype(TEXT_DTYPE))
    if _may_need_trimming(arrow):  # rare: exports seldom pad their cells
        arrow = pc.utf8_trim_whitespace(arrow)
    blank = pc.equal(arrow, "")
    if pc.any(blank).as_py():  # rare: the readers already make empty cells missing
        arrow = pc.if_else(blank, pa.scalar(None, arrow.type), arrow)
    return text_series(arrow, index)


def _may_need_trimming(cells: pa.Array) -> bool:
    """Whether some cell starts or ends with a byte that may belong to whitespace.

    Every whitespace character Arrow trims is a control or space byte (<= 0x20) or non-ASCII
    (>= 0x80); a cell whose first and last bytes are neither has nothing to trim. Two
    bytes per cell instead of a full copy of the column.
    """
    buffers = cell_bytes(cells)
    data = buffers.data
    last = len(data) - 1
    if len(cells) == 0 or last < 0:
        return False
    start, end = buffers.starts, buffers.ends
    # bytes 0x21-0x7E (printable ASCII) are the only safe ones: one wrapped compare each
    first_byte = data[np.minimum(start, last)] - np.uint8(0x21)
    last_byte = data[np.clip(end - 1, 0, last)] - np.uint8(0x21)
    unsafe = (first_byte >= 0x5E) | (last_byte >= 0x5E)
    return bool((unsafe & (end > start)).any())


def utc_datetimes(values: pd.Series) -> pd.Series:
    """ISO-8601 date(-time)s as UTC ``YYYY-MM-DDTHH:MM:SSZ``; unparseable ones left as written."""
    return text_series(normalised_datetimes(values), values.index)


def canonical_lists(values: pd.Series, *, dedupe: bool, by_distinct: bool = False) -> pd.Series:
    """``|``-joined list cells, canonical: items stripped, empties dropped, sorted.

    A missing cell is the empty list ``""``. Items are de-duplicated when ``dedupe``. With
    ``by_distinct``, each distinct cell is canonicalised once and the results spread back
    (for columns of few distinct values).
    """
    cells = as_arrow(values).fill_null("")
    if by_distinct:
        encoded = pc.dictionary_encode(cells)
        canonical = _canonical_cells(encoded.dictionary, dedupe=dedupe)
        return text_series(canonical.take(encoded.indices), values.index)
    return text_series(_canonical_cells(cells, dedupe=dedupe), values.index)


def _canonical_cells(cells: pa.Array, *, dedupe: bool) -> pa.Array:
    if _may_need_trimming(cells):
        cells = pc.utf8_trim_whitespace(cells)
    listy = np.asarray(pc.match_substring(cells, contract.LIST_SEPARATOR), dtype=bool)
    if not listy.any():
        return cells
    positions, items = split_list_cells(cells.filter(pa.array(listy)))
    items = pc.utf8_trim_whitespace(items)
    keep = np.asarray(pc.not_equal(items, ""), dtype=bool)
    positions, items = positions[keep], items.filter(pa.array(keep))
    # items by cell, then in text order (Arrow compares UTF-8 bytes: code point order)
    pairs = pa.table({"cell": pa.array(positions), "item": items})
    order = pc.sort_indices(pairs, sort_keys=[("cell", "ascending"), ("item", "ascending")])
    positions, items = positions[np.asarray(order)], items.take(order)
    if dedupe and len(items) > 1:
        first = np.ones(len(items), dtype=bool)
        same_item = np.asarray(pc.equal(items[1:], items[:-1]), dtype=bool)
        first[1:] = (positions[1:] != positions[:-1]) | ~same_item
        positions, items = positions[first], items.filter(pa.array(first))
    joined = join_groups(positions, items, int(listy.sum()))
    # written back in one Arrow pass (a pandas .iloc assignment costs several)
    return pc.replace_with_mask(cells, pa.array(listy), joined.cast(cells.type))


def join_groups(positions: np.ndarray, items: pa.Array | pa.ChunkedArray, size: int) -> pa.Array:
    """Items grouped by (sorted) position and ``|``-joined: one string per position."""
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    counts = np.bincount(positions, minlength=size) if len(positions) else np.zeros(size, int)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), items.cast(pa.string()))
    return pc.binary_join(lists, contract.LIST_SEPARATOR)


def integers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integer text as ``Int64``, and a mask of present cells that are not integers."""
    cells = as_arrow(values)
    present = np.asarray(cells.is_valid(), dtype=bool)
    shaped = pc.match_substring_regex(cells, f"^{_INTEGER}$").fill_null(False)
    unsigned = pc.utf8_ltrim(cells, characters="+")  # Arrow does not parse "+6"
    numbers = pc.cast(pc.if_else(shaped, unsigned, pa.scalar(None, cells.type)), pa.int64())
    series = pd.Series(numbers.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    series.index = values.index
    return series.astype("Int64"), present & ~np.asarray(shaped, dtype=bool)


def quoted(values: pd.Series, limit: int = 60) -> pd.Series:
    """Cell values for a message: single-quoted, cut to ``limit`` characters; a value of
    card-data shape (``transforms.card_shape``) is replaced by its mask, whatever its column.

    Never call this on a column of ``customer_sync.schemas.contract.SENSITIVE_COLUMNS``.
    """
    text = values.astype(TEXT_DTYPE).fillna("")
    long = text.str.len().to_numpy() > limit
    cut = text.str.slice(0, limit).where(~long, text.str.slice(0, limit) + "...")
    return ("'" + cut + "'").mask(card_shaped(text).to_numpy(), MASK)


def _problems(index: np.ndarray, column: str, rule: str, reason: str | np.ndarray) -> pd.DataFrame:
    size = len(index)
    return pd.DataFrame(
        {
            "index": index.astype(np.int64),
            "column": pd.Series([column] * size, dtype=TEXT_DTYPE),
            "rule": pd.Series([rule] * size, dtype=TEXT_DTYPE),
            "reason": pd.Series(
                reason if isinstance(reason, np.ndarray) else [reason] * size, dtype=TEXT_DTYPE
            ),
        }
    )
