"""The vectorised predicates behind the Pandera checks agree with their plain definitions.

The checks read Arrow data directly (byte columns for normalised date-times, hash encoding
for uniqueness, regexes only where a cheap test cannot decide); these properties hold each
fast path to the straightforward rule it replaces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_sync.schemas.columns import duplicated, fixed_width_bytes
from customer_sync.schemas.datetimes import (
    BARE_DATE_PATTERN,
    UTC_PATTERN,
    is_utc_datetime,
    normalised_datetimes,
)
from customer_sync.schemas.extracts import (
    IIN_PATTERN,
    LAST4_PATTERN,
    AccountExtract,
    _digits_of_length,
    _fullmatch,
    control_free,
)

_UTC_CHARS = st.sampled_from(list("0123456789-T:Z 09/"))
_NEAR_UTC = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ").rjust(20, "0")[-20:]),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", fullmatch=True),
    st.text(_UTC_CHARS, min_size=20, max_size=20),
)


def _regex_utc(values: list[str | None]) -> list[bool]:
    cells = pa.array(values, pa.large_string())
    return np.asarray(pc.match_substring_regex(cells, UTC_PATTERN).fill_null(False)).tolist()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _NEAR_UTC), min_size=1, max_size=40))
def test_utc_check_on_byte_columns_is_the_regex(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    assert fixed_width_bytes(pa.array(values, pa.large_string()), 20) is not None or all(
        v is None for v in values
    )
    assert is_utc_datetime(series).tolist() == _regex_utc(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), _NEAR_UTC, st.text(max_size=25)), min_size=1, max_size=40))
def test_utc_check_on_any_text_is_the_regex(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    assert is_utc_datetime(series).tolist() == _regex_utc(values)


_SMALL = st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_SMALL, _SMALL, _SMALL), min_size=1, max_size=40))
def test_duplicated_is_pandas_keep_false_over_complete_rows(rows: list[tuple]) -> None:
    frame = pd.DataFrame(rows, columns=["x", "y", "z"]).astype("str")
    complete = frame.notna().all(axis=1).to_numpy()
    expected = frame.duplicated(keep=False).to_numpy() & complete
    found = duplicated(frame["x"], frame["y"], frame["z"])
    assert found.tolist() == expected.tolist()
    # the key separator inside values: equal joined keys, different rows
    tricky = pd.Series(["a\x1f", "a"], dtype="str"), pd.Series(["b", "\x1fb"], dtype="str")
    assert duplicated(*tricky).tolist() == [False, False]
    one = duplicated(frame["x"])
    assert one.tolist() == (frame["x"].duplicated(keep=False) & frame["x"].notna()).tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ab|\n", max_size=6)), max_size=30))
def test_fullmatch_is_pandas_fullmatch(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    for pattern in ("[ab]{1,2}(?:\\|[ab]{1,2})*", "a|b", ""):
        # pandas answers False for a missing cell; pandera lets missing cells pass anyway
        expected = (series.str.fullmatch(pattern) | series.isna()).tolist()
        assert _fullmatch(series, pattern).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(alphabet="ab|", max_size=8)),
            st.one_of(st.none(), st.sampled_from(["a", "b", "ab"])),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_holder_checks_are_their_plain_rules(rows: list[tuple]) -> None:
    holders = pd.Series([h for h, _ in rows], dtype="str")
    primary = pd.Series([p for _, p in rows], dtype="str")
    frame = pd.DataFrame({"sourceCustomerIds": holders, "primarySourceCustomerId": primary})
    lists = [None if h is None else [i for i in h.split("|") if i] for h, _ in rows]
    listed = [
        p is None or (items is not None and p in items)
        for items, (_, p) in zip(lists, rows, strict=True)
    ]
    once = [items is None or len(set(items)) == len(items) for items in lists]
    lengths = [h is None or (h != "" and all(h.split("|"))) for h, _ in rows]
    assert AccountExtract._primary_listed(frame).tolist() == listed
    assert AccountExtract._holders_once(holders).tolist() == once
    assert AccountExtract._holder_lengths(holders).tolist() == lengths


_NEAR_DATE = st.one_of(
    st.dates().map(lambda d: d.strftime("%Y-%m-%d").rjust(10, "0")[-10:]),
    st.text(st.sampled_from(list("0123456789-/ ")), min_size=10, max_size=10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _NEAR_UTC, _NEAR_DATE), min_size=1, max_size=40))
def test_normalising_keeps_exactly_the_regex_matches(values: list[str | None]) -> None:
    """Cells of the normal form are kept, bare dates become midnight, by the byte rules."""
    cells = pa.array(values, pa.large_string())
    result = normalised_datetimes(pd.Series(values, dtype="str")).to_pylist()
    utc = _regex_utc(values)
    bare = np.asarray(pc.match_substring_regex(cells, BARE_DATE_PATTERN).fill_null(False))
    for value, out, is_utc, is_bare in zip(values, result, utc, bare, strict=True):
        if is_utc:
            assert out == value
        elif is_bare:
            assert out == f"{value}T00:00:00Z"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.from_regex(r"[0-9]{3,9}", fullmatch=True),
            st.text(st.sampled_from(list("0123456789x \u0661\uff11")), max_size=9),
        ),
        max_size=30,
    )
)
def test_digit_checks_are_their_patterns(values: list[str | None]) -> None:
    series = pd.Series(values, dtype="str")
    for pattern, lengths in ((LAST4_PATTERN, (4,)), (IIN_PATTERN, (6, 8))):
        expected = (series.str.fullmatch(pattern) | series.isna()).tolist()
        assert _digits_of_length(series, lengths).tolist() == expected


def test_byte_checks_over_more_rows_than_one_block() -> None:
    """The byte checks run 64k rows at a time; a longer column gets the same answers."""
    rng = np.random.default_rng(0)
    days = rng.integers(-400_000, 2_900_000, 150_000).astype("datetime64[D]")
    text = np.datetime_as_string(days.astype("datetime64[s]"), unit="s").astype(object) + "Z"
    text[::7] = "2023-02-29T00:00:00Z"  # not a date
    text[::11] = None
    values = [v if v is None or len(v) == 20 else None for v in text]
    assert is_utc_datetime(pd.Series(values, dtype="str")).tolist() == _regex_utc(values)


_CONTROLISH = st.text(
    st.sampled_from(["a", "é", "😀", "\x7f", "\x00", "\n", "\r", "\t", "\x1f", " ", "|"]),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), _CONTROLISH, st.text(max_size=8)), min_size=1, max_size=30),
    st.integers(0, 5),
)
def test_control_free_is_its_plain_rule(values: list[str | None], start: int) -> None:
    # sliced series too: the byte scan must read only the slice's own bytes
    first = min(start, len(values) - 1)
    series = pd.Series(values, dtype="str").iloc[first:]
    expected = [v is None or not any(ord(ch) <= 0x1F for ch in v) for v in values[first:]]
    assert control_free(series).tolist() == expected
