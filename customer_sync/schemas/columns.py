"""How text and list cells are held in the flat frames, and fast views of them.

Text columns are pandas' pyarrow-backed ``str`` dtype; these helpers move between them and
Arrow arrays (zero-copy where Arrow allows) so checks can use Arrow's vectorised kernels,
and split ``|``-joined list cells into (row position, item) pairs without a Python loop.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.schemas.contract import LIST_SEPARATOR

TEXT_DTYPE: Final = pd.StringDtype(storage="pyarrow", na_value=np.nan)
"""pandas' default text dtype (``str``): Arrow storage, NaN as the missing marker."""


def as_arrow(series: pd.Series) -> pa.Array:
    """The text column as one Arrow string array (nulls where missing)."""
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_large_string(array.type):
        array = array.cast(pa.large_string())
    return array


def text_series(values: pa.Array | pa.ChunkedArray, index: pd.Index | None = None) -> pd.Series:
    """An Arrow string array as a pandas text column (``str`` dtype)."""
    series = pd.Series(values.to_pandas(), dtype=TEXT_DTYPE)
    if index is not None:
        series.index = index
    return series


def split_list_cells(series: pd.Series | pa.Array) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Every item of a ``|``-joined list column as (row position, item) pairs.

    Missing cells and empty cells hold no items; items are returned as they are written
    (not stripped), in cell order.
    """
    cells = as_arrow(series) if isinstance(series, pd.Series) else series
    lists = pc.split_pattern(cells.fill_null(""), LIST_SEPARATOR)
    positions = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    items = pc.list_flatten(lists)
    present = np.asarray(pc.not_equal(items, ""), dtype=bool)
    return positions[present], items.filter(pa.array(present))


def fixed_width_bytes(cells: pa.Array, width: int) -> npt.NDArray[np.uint8] | None:
    """The bytes of the non-empty cells as a (cells, ``width``) matrix, without a copy, when
    every cell is either ``width`` bytes long or empty/missing; else None.

    Normalised date-time columns have this shape (20 bytes or missing), so checks over them
    can compare byte columns instead of running a regex over every cell.
    """
    buffers = cell_bytes(cells)
    if len(cells) == 0 or len(buffers.data) == 0:
        return None
    lengths = buffers.lengths
    if not ((lengths == width) | (lengths == 0)).all():
        return None
    return buffers.values.reshape(-1, width)


def cell_lengths(cells: pa.Array) -> npt.NDArray[np.int64]:
    """Byte length of every cell (0 when missing)."""
    return np.asarray(pc.binary_length(cells).fill_null(0), dtype=np.int64)


def duplicated(*columns: pd.Series | pa.Array | np.ndarray) -> npt.NDArray[np.bool_]:
    """Rows whose values in ``columns`` (all present) also appear on another row.

    Every copy is marked (pandas' ``duplicated(keep=False)``); a row missing any of the
    values is never a duplicate. Text columns are first joined into one key and counted
    once (equal rows make equal keys, so all-distinct keys mean no duplicates: the usual
    answer, for about half the cost of pandas' ``duplicated``); only when some keys repeat
    are the rows compared exactly, column by column.
    """
    values = [as_arrow(c) if isinstance(c, pd.Series) else pa.array(c) for c in columns]
    size = len(values[0])
    if all(pa.types.is_large_string(v.type) for v in values):
        key = values[0]
        if len(values) > 1:
            key = pc.binary_join_element_wise(*values, pa.scalar("\x1f", pa.large_string()))
        distinct = len(pc.unique(key)) - (1 if key.null_count else 0)
        if distinct == size - key.null_count:
            return np.zeros(size, dtype=bool)
    return _duplicated_exactly(values)


def _duplicated_exactly(values: list[pa.Array]) -> npt.NDArray[np.bool_]:
    size = len(values[0])
    key = np.zeros(size, dtype=np.int64)
    present = np.ones(size, dtype=bool)
    for column in values:
        encoded = pc.dictionary_encode(column)
        codes = np.asarray(encoded.indices.fill_null(-1), dtype=np.int64)
        present &= codes >= 0
        # (key, code) pairs numbered densely again, so the key never overflows
        pairs = key * (len(encoded.dictionary) + 1) + codes + 1
        key = np.asarray(pc.dictionary_encode(pa.array(pairs)).indices, dtype=np.int64)
    counts = np.bincount(key[present], minlength=int(key.max(initial=-1)) + 1)
    duplicate: npt.NDArray[np.bool_] = present & (counts[key] > 1)
    return duplicate
