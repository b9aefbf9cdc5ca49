"""The one reader of Arrow's offset buffers: a string or binary array's bytes, no copy.

A (large) string or binary array is three buffers: validity, offsets (``int32``, or
``int64`` for the large types) and the data. A sliced array shares them with its parent,
starting ``array.offset`` cells in. The vectorised scans of this package (id hashes,
whitespace and escaping pre-checks, fixed-width date-times, the spool's documents) all
need the same two things: each cell's start and end in the data, and the data as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Offsets = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class CellBytes:
    """The cells of one array as positions into one byte buffer.

    ``offsets`` (``int64``, whatever the array's offset width) has one entry per cell and
    one more: cell ``i`` is
    ``data[offsets[i]:offsets[i + 1]]`` (a null cell is empty, or holds bytes that must be
    ignored). ``data`` is the whole data buffer the array points into (empty without one).
    """

    offsets: Offsets
    data: Bytes

    @property
    def starts(self) -> Offsets:
        return self.offsets[:-1]

    @property
    def ends(self) -> Offsets:
        return self.offsets[1:]

    @property
    def lengths(self) -> Offsets:
        return np.diff(self.offsets)

    @property
    def values(self) -> Bytes:
        """The bytes of these cells together, first to last (no copy)."""
        if len(self.offsets) == 0:
            return self.data[:0]
        return self.data[int(self.offsets[0]) : int(self.offsets[-1])]


def cell_bytes(cells: pa.Array) -> CellBytes:
    """The offsets and data of a string or binary array (large or not, sliced or not)."""
    wide = pa.types.is_large_string(cells.type) or pa.types.is_large_binary(cells.type)
    if not (
        wide or pa.types.is_string(cells.type) or pa.types.is_binary(cells.type)
    ):  # pragma: no cover - a programming error
        raise TypeError(f"not a string or binary array: {cells.type}")
    _, offset_buffer, data_buffer = cells.buffers()
    size = len(cells)
    offsets: Offsets
    if offset_buffer is None:  # an empty array may come without buffers
        offsets = np.zeros(size + 1, dtype=np.int64)
    elif wide:
        offsets = np.frombuffer(offset_buffer, dtype=np.int64)[
            cells.offset : cells.offset + size + 1
        ]
    else:  # 32-bit offsets, widened (a copy of the offsets only, never of the data)
        narrow = np.frombuffer(offset_buffer, dtype=np.int32)
        offsets = narrow[cells.offset : cells.offset + size + 1].astype(np.int64)
    data: Bytes = (
        np.zeros(0, dtype=np.uint8)
        if data_buffer is None
        else np.frombuffer(data_buffer, dtype=np.uint8)
    )
    return CellBytes(offsets, data)
