"""CSV cells made safe to open in a spreadsheet (formula injection).

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula
(``=HYPERLINK("http://x")`` becomes a live link, worse ones run commands), and a leading
tab or carriage return can hide such a prefix. OWASP's rule: prefix those cells with a
single quote, which every spreadsheet shows as text. Every CSV this project writes passes
its cells through here; the quote is visible, so a person still sees the exact value after
it. Numbers (``-1`` in a numeric column) are written as numbers: only text cells are
touched.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP)."""


def neutralised(value: str) -> str:
    """The text of one cell, prefixed with ``'`` when a spreadsheet would run it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def neutralised_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every text cell ``neutralised`` (a new frame; the input is unchanged)."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        risky = column.map(_is_formula, na_action="ignore").fillna(False).astype(bool)
        if risky.any():
            out[name] = column.map(_cell, na_action="ignore")
    return out


def _is_formula(value: object) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def _cell(value: object) -> object:
    return neutralised(value) if isinstance(value, str) else value
