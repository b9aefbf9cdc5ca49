"""customer_sync.schemas.datetimes: the digit-reading fast path agrees with pandas' ISO-8601 parser.

``iso_instants`` computes plainly in-range date-times from their bytes and leaves the rest to
pandas; these tests hold the fast path to pandas' answer on every shape the extracts accept,
in range or not.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_sync.schemas.datetimes import ISO_SHAPE, _parsed_instants, _plain_instants

# digits anywhere, so months 13-99, days 32, hours 24, offsets +24:00 are drawn too
_SHAPED = st.from_regex(ISO_SHAPE, fullmatch=True).filter(lambda s: s.isascii())
_IN_RANGE = st.builds(
    lambda y, mo, d, h, mi, s, sep, tail: f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}{s}{tail}",
    st.integers(1000, 9999),
    st.integers(1, 12),
    st.integers(1, 31),
    st.integers(0, 23),
    st.integers(0, 59),
    st.sampled_from(["", ":00", ":59", ":07.5", ",123456789", ":30.1234567"]).map(
        lambda s: s if s.startswith(":") or s == "" else ":00" + s
    ),
    st.sampled_from(["T", " "]),
    st.sampled_from(
        ["", "Z", "+00:00", "-00:00", "+23:59", "-23:59", "+0530", "-0945", "+14", "-05"]
    ),
)


def _agree(values: list[str]) -> None:
    cells = pa.array(values, pa.large_string())
    seconds, plain = _plain_instants(cells)
    parsed, ok = _parsed_instants(cells)
    # a plain cell is one pandas accepts, as the same instant
    assert ok[plain].all(), [v for v, p, o in zip(values, plain, ok, strict=True) if p and not o]
    assert np.array_equal(seconds[plain], parsed[plain])


@settings(max_examples=300, deadline=None)
@given(st.lists(_SHAPED, min_size=1, max_size=30))
def test_plain_instants_agree_with_pandas_on_any_accepted_shape(values: list[str]) -> None:
    _agree(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(_IN_RANGE, min_size=1, max_size=30))
def test_plain_instants_agree_with_pandas_in_range(values: list[str]) -> None:
    _agree(values)
    cells = pa.array(values, pa.large_string())
    _, plain = _plain_instants(cells)
    _, ok = _parsed_instants(cells)
    assert np.array_equal(plain, ok)  # in range, only pandas' real instants are plain


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("2024-02-29T10:00", True),
        ("2023-02-29T10:00", False),  # not a leap year: pandas says no
        ("2024-03-01T24:00:00", False),
        ("2024-03-01T23:59:60", False),
        ("2024-03-01T10:00:00+23:59", True),
        ("2024-03-01T10:00:00+24:00", False),
        ("2024-03-01T10:00:00+00:60", False),
        ("9999-12-31T23:00:00-05:00", True),  # year 10000 in UTC: the schema reports it
        ("2024-03-01", False),  # bare dates are not read here
    ],
)
def test_plain_instants_edges(value: str, plain: bool) -> None:
    _agree([value])
    assert bool(_plain_instants(pa.array([value], pa.large_string()))[1][0]) is plain
