"""The date-time text the extracts may hold, and the one form they are normalised to.

Accepted (ISO-8601, extended format): a bare date ``2024-03-01``, or a date and a time
``2024-03-01T14:05``, ``...T14:05:09``, ``...T14:05:09.123`` (``T`` or a space), with an
optional offset ``Z``, ``+02:00``, ``+0200`` or ``-05``. Normalised: UTC
``YYYY-MM-DDTHH:MM:SSZ`` (``customer_sync.schemas.contract.DATETIME_FORMAT``), fractions truncated.
Years run from 1000 to 9999 (an earlier year is a placeholder, not a date).

The patterns below are the rules; fixed-width cells (the normalised form, bare dates) are
checked by the same rules on byte columns (numpy), a few times cheaper than the regex, and
plain date-times are read from their digits. Pandas' ``to_datetime`` decides only the cells
out of plain range (its ``format="ISO8601"`` path takes about 1 s per million cells).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.schemas.columns import as_arrow, cell_lengths, fixed_width_bytes

ISO_SHAPE: Final = (
    r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)
"""Every accepted ISO-8601 shape (whether the parts are in range is pandas' to check)."""

_YEAR: Final = "[1-9][0-9]{3}"
_LEAP_YEAR: Final = "(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
_DATE: Final = (
    "(?:"
    f"{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    f"|{_YEAR}-(?:0[13-9]|1[0-2])-(?:29|30)"
    f"|{_YEAR}-(?:0[13578]|1[02])-31"
    f"|{_LEAP_YEAR}-02-29"
    ")"
)
_TIME: Final = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
UTC_PATTERN: Final = f"^{_DATE}T{_TIME}Z$"
"""The normalised form, with every part in range (month lengths and leap years included)."""


BARE_DATE_PATTERN: Final = f"^{_DATE}$"
"""A bare date, with every part in range."""


def normalised_datetimes(values: pd.Series) -> pa.Array:
    """The column with every instant as UTC ``YYYY-MM-DDTHH:MM:SSZ`` and every other cell
    (missing, or not an accepted instant) as it was.

    Cells already in that form are recognised by their bytes (the rule of UTC_PATTERN, on
    byte columns of the 20-byte cells) and kept; bare dates likewise (BARE_DATE_PATTERN,
    10-byte cells); only the rest are parsed (``iso_instants``). The changed cells are
    written back in one gather.
    """
    cells = as_arrow(values)
    length = np.asarray(pc.binary_length(cells).fill_null(0), dtype=np.int64)
    already = _matching(cells, length, 20, _utc_rows)
    bare = _matching(cells, length, 10, _date_rows)
    others = (length > 0) & ~already & ~bare
    parts: list[tuple[np.ndarray, pa.Array]] = []
    if bare.any():
        where = np.flatnonzero(bare)
        midnight = pc.binary_replace_slice(cells.take(pa.array(where)), 10, 10, "T00:00:00Z")
        parts.append((where, midnight))
    if others.any():
        where = np.flatnonzero(others)
        seconds, ok = _instants(cells.take(pa.array(where)))
        parts.append((where[ok], utc_text(seconds[ok]).cast(pa.large_string())))
    parts = [(where, text) for where, text in parts if len(where)]
    if not parts:
        return cells
    # one gather from the cells followed by the new texts: every cell taken from where its
    # final text is (no sort of the changed positions; faster than replace_with_mask)
    source = np.arange(len(cells), dtype=np.int64)
    positions = np.concatenate([where for where, _ in parts])
    source[positions] = len(cells) + np.arange(len(positions), dtype=np.int64)
    texts = pa.concat_arrays([cells, *(text for _, text in parts)])
    return texts.take(pa.array(source))


def _matching(
    cells: pa.Array,
    length: npt.NDArray[np.int64],
    width: int,
    rule: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.bool_]],
) -> npt.NDArray[np.bool_]:
    """Where a cell is ``width`` bytes long and its bytes pass ``rule``."""
    found = np.zeros(len(cells), dtype=bool)
    where = np.flatnonzero(length == width)
    if len(where):
        # taken together, cells of one width are one (cells, width) byte matrix
        rows = fixed_width_bytes(cells.take(pa.array(where)), width)
        if rows is not None:
            found[where] = rule(rows)
    return found


def iso_instants(values: pd.Series) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Seconds since the epoch (UTC) of each cell, and where the cell is a real instant.

    DECISION: a date-time without an offset, and a bare date, are taken as UTC.

    Cells of an accepted shape whose every part is plainly in range are computed from their
    digits (``_plain_instants``, about 6x cheaper than pandas' parser); the rest (bare dates
    here, out-of-range parts) go through pandas, which has the last word on what is real.
    """
    return _instants(as_arrow(values))


def _instants(cells: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    seconds = np.zeros(len(cells), dtype=np.int64)
    shaped = np.asarray(pc.match_substring_regex(cells, ISO_SHAPE).fill_null(False), dtype=bool)
    if not shaped.any():
        return seconds, shaped
    where = np.flatnonzero(shaped)
    candidates = cells.take(pa.array(where))
    plain_seconds, plain = _plain_instants(candidates)
    seconds[where[plain]] = plain_seconds[plain]
    ok = shaped.copy()
    if not plain.all():
        rest = np.flatnonzero(~plain)
        rest_seconds, rest_ok = _parsed_instants(candidates.take(pa.array(rest)))
        ok[where[rest]] = rest_ok
        seconds[where[rest[rest_ok]]] = rest_seconds[rest_ok]
    return seconds, ok


def _parsed_instants(candidates: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Seconds and validity of ISO_SHAPE cells, by pandas' ISO-8601 parser."""
    # fractions are truncated anyway; dropping them first keeps pandas at microsecond
    # resolution (7+ digits, as .NET writes 9999-12-31T23:59:59.9999999, would make it
    # nanoseconds, which end in 2262). The date has no "." or ",", so only a fraction does.
    fraction = pc.or_(pc.match_substring(candidates, "."), pc.match_substring(candidates, ","))
    if pc.any(fraction).as_py():
        trimmed = pc.replace_substring_regex(candidates.filter(fraction), "[.,][0-9]+", "")
        candidates = pc.replace_with_mask(candidates, fraction, trimmed)
    parsed = pd.to_datetime(
        pd.Series(candidates.to_pandas(), dtype="str"), format="ISO8601", utc=True, errors="coerce"
    )
    ok = parsed.notna().to_numpy()
    seconds = np.zeros(len(candidates), dtype=np.int64)
    instants = parsed.dropna().dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    seconds[ok] = instants.astype(np.int64)
    return seconds, ok


_MONTH_DAYS: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_PLUS, _MINUS, _COLON, _ZERO = ord("+"), ord("-"), ord(":"), ord("0")


def _plain_instants(cells: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Seconds of ISO_SHAPE date-times read from their bytes, and which cells were plain.

    Plain: a time is given (not a bare date), month 1-12, a day the month has (leap years
    included), hour <= 23, minute and second <= 59, offset hours <= 23 and minutes <= 59:
    pandas accepts exactly these as the same instant (checked in tests). The layout is fixed
    up to the minutes (``YYYY-MM-DDTHH:MM``); seconds are ``:SS`` at 16, and the offset is
    read from the end (``±HH:MM``, ``±HHMM``, ``±HH``; ``Z`` or nothing is UTC). Only valid
    for cells that match ISO_SHAPE: nothing here checks that a byte is a digit.
    """
    buffers = cell_bytes(cells)
    data = buffers.data
    last = len(data) - 1
    start, end = buffers.starts, buffers.ends
    length = end - start

    def byte(position: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        # clipped: a short last cell must not read past the buffer (its value is masked)
        return data[np.minimum(position, last)].astype(np.int64)

    def number(position: npt.NDArray[np.int64], digits: int) -> npt.NDArray[np.int64]:
        value = byte(position) - _ZERO
        for k in range(1, digits):
            value = value * 10 + byte(position + k) - _ZERO
        return value

    year, month, day = number(start, 4), number(start + 5, 2), number(start + 8, 2)
    hour, minute = number(start + 11, 2), number(start + 14, 2)
    with_seconds = (length >= 19) & (byte(start + 16) == _COLON)
    second = np.where(with_seconds, number(start + 17, 2), 0)
    # the offset's sign is 6, 5 or 3 bytes from the end; no other sign can be there
    at6, at5, at3 = byte(end - 6), byte(end - 5), byte(end - 3)
    long_zone = (at6 == _PLUS) | (at6 == _MINUS)
    compact_zone = ~long_zone & ((at5 == _PLUS) | (at5 == _MINUS))
    hours_zone = ~long_zone & ~compact_zone & ((at3 == _PLUS) | (at3 == _MINUS))
    zoned = long_zone | compact_zone | hours_zone
    sign_at = np.where(long_zone, end - 6, np.where(compact_zone, end - 5, end - 3))
    zone_hours = np.where(zoned, number(sign_at + 1, 2), 0)
    zone_minutes = np.where(long_zone | compact_zone, number(end - 2, 2), 0)
    west = zoned & (byte(sign_at) == _MINUS)
    zone = np.where(west, -1, 1) * (zone_hours * 3600 + zone_minutes * 60)

    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month - 1, 0, 11)] + (leap & (month == 2))
    plain = (
        (length >= 16)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= month_days)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 59)
        & (zone_hours <= 23)
        & (zone_minutes <= 59)
    )
    days = _days_from_civil(year, month, day)
    return days * 86400 + hour * 3600 + minute * 60 + second - zone, plain


def _days_from_civil(
    year: npt.NDArray[np.int64], month: npt.NDArray[np.int64], day: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: npt.NDArray[np.int64] = era * 146097 + day_of_era - 719468
    return days


def utc_text(seconds: npt.NDArray[np.int64]) -> pa.Array:
    """Seconds since the epoch as UTC ``YYYY-MM-DDTHH:MM:SSZ`` text."""
    text = pc.cast(pa.array(seconds.astype("datetime64[s]"), pa.timestamp("s")), pa.string())
    # "YYYY-MM-DD HH:MM:SS" is ASCII: byte slicing is safe and ten times faster than utf8
    return pc.binary_replace_slice(pc.binary_replace_slice(text, 10, 11, "T"), 19, 19, "Z")


def is_utc_datetime(values: pd.Series) -> pd.Series:
    """True where a cell is a real instant written as ``YYYY-MM-DDTHH:MM:SSZ`` (missing: False)."""
    cells = as_arrow(values)
    rows = fixed_width_bytes(cells, len("YYYY-MM-DDTHH:MM:SSZ"))
    if rows is None:  # some cell of another length: only the regex can say
        ok = pc.match_substring_regex(cells, UTC_PATTERN).fill_null(False)
        return pd.Series(np.asarray(ok, dtype=bool), index=values.index)
    # a normalised column: every present cell is 20 bytes, compared column by column
    result = np.zeros(len(cells), dtype=bool)
    result[cell_lengths(cells) == 20] = _utc_rows(rows)
    return pd.Series(result, index=values.index)


def _digits_and_marks(
    rows: npt.NDArray[np.uint8], marks: bytes, positions: str
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32]]:
    """Rows (one fixed-width cell each) with ``marks`` at the ``M`` places of ``positions``
    and ASCII digits at its ``D`` places; and the digits' values (columns in order)."""
    digit_at = [k for k, kind in enumerate(positions) if kind == "D"]
    mark_at = [k for k, kind in enumerate(positions) if kind == "M"]
    digits = rows[:, digit_at] - np.uint8(_ZERO)  # a non-digit byte wraps to >= 10
    expected = np.frombuffer(marks, dtype=np.uint8)
    ok = (digits < 10).all(axis=1) & (rows[:, mark_at] == expected).all(axis=1)
    return ok, digits.astype(np.int32)


def _two(values: npt.NDArray[np.int32], first: int) -> npt.NDArray[np.int32]:
    result: npt.NDArray[np.int32] = values[:, first] * 10 + values[:, first + 1]
    return result


def _real_dates(ok: npt.NDArray[np.bool_], values: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    """Where the first eight digit columns (YYYYMMDD) are a date of years 1000-9999."""
    year = values[:, 0] * 1000 + values[:, 1] * 100 + values[:, 2] * 10 + values[:, 3]
    month, day = _two(values, 4), _two(values, 6)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month - 1, 0, 11)] + (leap & (month == 2))
    real: npt.NDArray[np.bool_] = (
        ok & (year >= 1000) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    )
    return real


def _in_blocks(
    rule: Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.bool_]],
) -> Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.bool_]]:
    """``rule`` applied to 64k rows at a time: its working matrices then stay in the CPU's
    cache (over a million rows at once, the same work took three times as long)."""

    def blocked(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        if len(rows) <= _BLOCK_ROWS:
            return rule(rows)
        return np.concatenate(
            [rule(rows[at : at + _BLOCK_ROWS]) for at in range(0, len(rows), _BLOCK_ROWS)]
        )

    return blocked


_BLOCK_ROWS: Final = 1 << 16


@_in_blocks
def _utc_rows(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which 20-byte rows match UTC_PATTERN: the same rule as the regex, on byte columns."""
    ok, values = _digits_and_marks(rows, b"--T::Z", "DDDDMDDMDDMDDMDDMDDM")
    hour, minute, second = _two(values, 8), _two(values, 10), _two(values, 12)
    real: npt.NDArray[np.bool_] = (
        _real_dates(ok, values) & (hour <= 23) & (minute <= 59) & (second <= 59)
    )
    return real


@_in_blocks
def _date_rows(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Which 10-byte rows match BARE_DATE_PATTERN."""
    ok, values = _digits_and_marks(rows, b"--", "DDDDMDDMDD")
    return _real_dates(ok, values)
