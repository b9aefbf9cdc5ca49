"""The one reader of Arrow offset buffers: each cell's bytes, for every string and binary
type, sliced or not, against what Arrow itself says the cell holds."""

from __future__ import annotations

import hypothesis.strategies as st
import pyarrow as pa
from hypothesis import given, settings

from customer_sync.schemas.arrow_bytes import cell_bytes

_TYPES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.none() | st.text(max_size=12), max_size=20),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
)
def test_each_cell_is_its_bytes(values: list[str | None], before: int, after: int) -> None:
    for kind in _TYPES:
        raw = [v if v is None or pa.types.is_unicode(kind) or pa.types.is_large_unicode(kind)
               else v.encode() for v in ["pad"] * before + values + ["tail"] * after]  # fmt: skip
        cells = pa.array(raw, kind).slice(before, len(values))
        found = cell_bytes(cells)
        assert len(found.offsets) == len(values) + 1
        for i, value in enumerate(values):
            got = found.data[found.starts[i] : found.ends[i]].tobytes()
            assert got == (value or "").encode() or value is None
        present = b"".join((v or "").encode() for v in values)
        if all(v is not None for v in values):
            assert found.values.tobytes() == present
            assert found.lengths.tolist() == [len(v.encode()) for v in values if v is not None]


def test_an_empty_array_has_no_bytes() -> None:
    found = cell_bytes(pa.array([], pa.large_string()))
    assert found.offsets.tolist() in ([0], [])  # one offset, or none when Arrow kept none
    assert found.values.tobytes() == b""
