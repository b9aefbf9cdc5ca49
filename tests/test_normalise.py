"""Normalising raw text: date-times to UTC, canonical lists, integers; properties over many
generated values (hypothesis) against plain-Python references."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_sync.schemas.datetimes import is_utc_datetime
from customer_sync.transforms.normalise import (
    canonical_lists,
    integers,
    normalise_table,
    stripped_text,
    utc_datetimes,
)
from tests.extract_factory import extract_of, raw_rows


def _text(values: list[str | None]) -> pd.Series:
    return pd.Series(values, dtype="str")


@st.composite
def _written_instants(draw: st.DrawFn) -> tuple[str, str]:
    """An instant written one of the accepted ISO-8601 ways, and its UTC normal form."""
    local = draw(st.datetimes(datetime(1001, 1, 1), datetime(9998, 12, 31)))
    if draw(st.booleans()):  # a bare date is midnight UTC
        day = local.strftime("%Y-%m-%d")
        return day, f"{day}T00:00:00Z"
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    separator = draw(st.sampled_from(["T", " "]))
    seconds = draw(st.sampled_from(["", ":SS", ":SS.f"]))
    if seconds == "":
        local = local.replace(second=0, microsecond=0)
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M")
    if seconds:
        text += local.strftime(":%S")
    if seconds == ":SS.f":
        text += "." + draw(st.from_regex(r"[0-9]{1,9}", fullmatch=True))
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if minutes == 0:
        suffix = draw(st.sampled_from(["", "Z", "+00:00", "-00:00", "+0000", "+00"]))
    elif mins == 0:
        suffix = draw(
            st.sampled_from([f"{sign}{hours:02d}:00", f"{sign}{hours:02d}00", f"{sign}{hours:02d}"])
        )
    else:
        suffix = draw(
            st.sampled_from([f"{sign}{hours:02d}:{mins:02d}", f"{sign}{hours:02d}{mins:02d}"])
        )
    utc = local.replace(microsecond=0) - timedelta(minutes=minutes)
    return text + suffix, utc.replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=300, deadline=None)
@given(st.lists(_written_instants(), min_size=1, max_size=20))
def test_every_accepted_form_becomes_its_utc_instant(pairs: list[tuple[str, str]]) -> None:
    written, expected = zip(*pairs, strict=True)
    result = utc_datetimes(_text(list(written)))
    assert result.tolist() == list(expected)
    assert is_utc_datetime(result).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=20))
def test_anything_else_is_left_as_written_or_parsed_never_lost(values: list[str | None]) -> None:
    cells = _text(values)
    result = utc_datetimes(cells)
    assert len(result) == len(cells)
    parsed = is_utc_datetime(result).to_numpy()
    kept = cells.fillna("\0").to_numpy() == result.fillna("\0").to_numpy()
    assert (parsed | kept).all()


@pytest.mark.parametrize(
    "value",
    [
        "2024",
        "2024-03",
        "20240301",
        "2024-02-30",
        "2024-03-01T24:00",
        "2024-03-01T10:00+25:00",
        "0999-12-31",
        "2024-03-01T10",
        "03/01/2024",
        "2024-03-01Z",
    ],
)
def test_shapes_that_are_not_accepted_are_left_for_the_schema(value: str) -> None:
    assert utc_datetimes(_text([value])).tolist() == [value]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet="AB C1\t\u00e9\u20ac", min_size=0, max_size=4), max_size=5).map(
            lambda items: "|".join(items)
        ),
        max_size=10,
    ),
    st.booleans(),
    st.booleans(),
)
def test_list_cells_are_canonical(cells: list[str], dedupe: bool, by_distinct: bool) -> None:
    result = canonical_lists(_text(cells), dedupe=dedupe, by_distinct=by_distinct).tolist()
    for cell, got in zip(cells, result, strict=True):
        items = [item.strip() for item in cell.split("|") if item.strip()]
        items = sorted(set(items)) if dedupe else sorted(items)
        assert got == "|".join(items)


def test_integers_accept_signs_and_report_the_rest() -> None:
    numbers, bad = integers(_text(["4", "+5", "-3", None, "4.0", "x", "99999999999999999999"]))
    assert numbers.tolist() == [4, 5, -3, pd.NA, pd.NA, pd.NA, pd.NA]
    assert bad.tolist() == [False, False, False, False, True, True, True]


def test_normalising_is_idempotent_and_leaves_its_input_alone() -> None:
    extract = extract_of(raw_rows())
    for table in ("customers", "accounts", "cards"):
        raw = extract.table(table)
        before = raw.copy()
        once = normalise_table(raw, table)
        pd.testing.assert_frame_equal(raw, before)
        as_text = once.frame.astype({c: "str" for c in once.frame.columns if c != "_row"})
        as_text = as_text.mask(once.frame.isna())
        twice = normalise_table(as_text, table)
        pd.testing.assert_frame_equal(twice.frame, once.frame)
        assert once.problems.empty


def test_an_account_without_holders_gets_its_primary_alone() -> None:
    rows = raw_rows()
    rows["accounts"][0]["sourceCustomerIds"] = " | "
    frame = normalise_table(extract_of(rows).table("accounts"), "accounts").frame
    assert frame["sourceCustomerIds"].tolist()[0] == "C001"
    assert frame.index.equals(pd.RangeIndex(len(frame)))
    assert frame["_row"].dtype == np.int64


def test_a_missing_column_is_a_programming_error() -> None:
    raw = extract_of(raw_rows()).table("cards").drop(columns="iin")
    with pytest.raises(ValueError, match="lacks column"):
        normalise_table(raw, "cards")


def test_only_control_space_or_non_ascii_bytes_are_ever_trimmed() -> None:
    """stripped_text skips the trim when no cell starts or ends with such a byte."""
    ascii_chars = [chr(c) for c in range(128)]
    cells = pa.array([f"{c}x{c}" for c in ascii_chars], pa.large_string())
    trimmed = pc.utf8_trim_whitespace(cells).to_pylist()
    changed = {ord(c) for c, t in zip(ascii_chars, trimmed, strict=True) if t != f"{c}x{c}"}
    assert changed and all(c <= 0x20 or c >= 0x7F for c in changed)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=20))
def test_stripped_text_is_arrow_trim(values: list[str | None]) -> None:
    expected = pc.utf8_trim_whitespace(pa.array(values, pa.large_string())).to_pylist()
    expected = [None if v == "" else v for v in expected]
    result = stripped_text(_text(values), pd.RangeIndex(len(values)))
    assert [None if pd.isna(v) else v for v in result.tolist()] == expected
