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

from schemas.contract import LIST_SEPARATOR

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


def split_list_cells(series: pd.Series) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Every item of a ``|``-joined list column as (row position, item) pairs.

    Missing cells and empty cells hold no items; items are returned as they are written
    (not stripped), in cell order.
    """
    cells = as_arrow(series)
    lists = pc.split_pattern(cells.fill_null(""), LIST_SEPARATOR)
    positions = np.asarray(pc.list_parent_indices(lists), dtype=np.int64)
    items = pc.list_flatten(lists)
    present = np.asarray(pc.not_equal(items, ""), dtype=bool)
    return positions[present], items.filter(pa.array(present))
