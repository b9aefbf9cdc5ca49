"""The date-time text the extracts may hold, and the one form they are normalised to.

Accepted (ISO-8601, extended format): a bare date ``2024-03-01``, or a date and a time
``2024-03-01T14:05``, ``...T14:05:09``, ``...T14:05:09.123`` (``T`` or a space), with an
optional offset ``Z``, ``+02:00``, ``+0200`` or ``-05``. Normalised: UTC
``YYYY-MM-DDTHH:MM:SSZ`` (``schemas.contract.DATETIME_FORMAT``), fractions truncated.
Years run from 1000 to 9999 (an earlier year is a placeholder, not a date).

Both checks are single RE2 passes (Arrow): about 0.1 s per million cells. Pandas'
``to_datetime`` with an explicit format falls back to ``strptime`` and takes seconds.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.columns import as_arrow

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

    Cells already in that form are recognised by one RE2 pass over the 20-character cells
    and kept; bare dates by one pass over the 10-character cells; only the rest are parsed
    (``iso_instants``). The changed cells are written back in one pass.
    """
    cells = as_arrow(values)
    length = np.asarray(pc.binary_length(cells).fill_null(0), dtype=np.int64)
    already = _matching(cells, length == 20, UTC_PATTERN)
    bare = _matching(cells, length == 10, BARE_DATE_PATTERN)
    others = (length > 0) & ~already & ~bare
    parts: list[tuple[np.ndarray, pa.Array]] = []
    if bare.any():
        where = np.flatnonzero(bare)
        midnight = pc.binary_replace_slice(cells.take(pa.array(where)), 10, 10, "T00:00:00Z")
        parts.append((where, midnight))
    if others.any():
        where = np.flatnonzero(others)
        seconds, ok = iso_instants(pd.Series(cells.take(pa.array(where)).to_pandas(), dtype="str"))
        parts.append((where[ok], utc_text(seconds[ok]).cast(pa.large_string())))
    parts = [(where, text) for where, text in parts if len(where)]
    if not parts:
        return cells
    positions = np.concatenate([where for where, _ in parts])
    texts = pa.concat_arrays([text for _, text in parts])
    order = np.argsort(positions, kind="stable")
    changed = np.zeros(len(cells), dtype=bool)
    changed[positions] = True
    return pc.replace_with_mask(cells, pa.array(changed), texts.take(pa.array(order)))


def _matching(cells: pa.Array, candidates: np.ndarray, pattern: str) -> np.ndarray:
    """Where a cell is a candidate and matches ``pattern`` (the regex runs on candidates only)."""
    found = np.zeros(len(cells), dtype=bool)
    if candidates.any():
        where = np.flatnonzero(candidates)
        hits = pc.match_substring_regex(cells.take(pa.array(where)), pattern)
        found[where] = np.asarray(hits.fill_null(False), dtype=bool)
    return found


def iso_instants(values: pd.Series) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Seconds since the epoch (UTC) of each cell, and where the cell is a real instant.

    DECISION: a date-time without an offset, and a bare date, are taken as UTC.
    """
    size = len(values)
    seconds = np.zeros(size, dtype=np.int64)
    shaped = np.asarray(
        pc.match_substring_regex(as_arrow(values), ISO_SHAPE).fill_null(False), dtype=bool
    )
    if not shaped.any():
        return seconds, shaped
    candidates = as_arrow(values).filter(pa.array(shaped))
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
    ok = shaped.copy()
    ok[shaped] = parsed.notna().to_numpy()
    instants = parsed.dropna().dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    seconds[ok] = instants.astype(np.int64)
    return seconds, ok


def utc_text(seconds: npt.NDArray[np.int64]) -> pa.Array:
    """Seconds since the epoch as UTC ``YYYY-MM-DDTHH:MM:SSZ`` text."""
    text = pc.cast(pa.array(seconds.astype("datetime64[s]"), pa.timestamp("s")), pa.string())
    # "YYYY-MM-DD HH:MM:SS" is ASCII: byte slicing is safe and ten times faster than utf8
    return pc.binary_replace_slice(pc.binary_replace_slice(text, 10, 11, "T"), 19, 19, "Z")


def is_utc_datetime(values: pd.Series) -> pd.Series:
    """True where a cell is a real instant written as ``YYYY-MM-DDTHH:MM:SSZ`` (missing: False)."""
    ok = pc.match_substring_regex(as_arrow(values), UTC_PATTERN).fill_null(False)
    return pd.Series(np.asarray(ok, dtype=bool), index=values.index)
