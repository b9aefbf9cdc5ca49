"""Values that look like card data, whatever column they came from: never echoed.

Masking by column name alone fails when a header is mislabelled (``iin`` and ``cardType``
swapped echoed 60 iins into the rejects). So a value is also withheld from every message
when its *shape* is that of card data:

* the whole value is digits, at least 4 of them, once spaces and dashes are removed:
  last4 (4), iin (6 or 8), a card number (12-19), postal codes (5, 9; ``12345-6789``),
  and any longer digit string;
* or it holds a run of 12 or more digits (spaces and dashes allowed between them): a card
  number inside other text (``card 4111 1111 1111 1111``).

DECISION: ids made of digits (``00412345``) are masked in reasons too: the rejects file
names each row by its id in its own ``id`` column and by its row number, so a reason loses
nothing by not repeating it. The ``id`` column itself is not masked (a bank's customer
numbers are often all digits, and without them the rejects could not be acted on); the
rejects file is owner-only. One shape is let through: an ISO date ``YYYY-MM-DD`` (4-2
digits grouping that no card, iin or postal code uses), so a bad date is still shown.
"""

from __future__ import annotations

import re
from typing import Final

import pandas as pd

_SEPARATORS: Final = re.compile(r"[\s\-]+")
_ALL_DIGITS: Final = re.compile(r"\d{4,}")
_LONG_DIGIT_RUN: Final = re.compile(r"\d(?:[\s\-]*\d){11,}")
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
MASK: Final = "[digits not shown]"
"""What a message says instead of a value of card-data shape."""


def looks_like_card_data(value: object) -> bool:
    """Whether a cell's value has the shape of card data (see the module docstring)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _ISO_DATE.fullmatch(text):
        return False
    if _ALL_DIGITS.fullmatch(_SEPARATORS.sub("", text)):
        return True
    return _LONG_DIGIT_RUN.search(text) is not None


def card_shaped(values: pd.Series) -> pd.Series:
    """``looks_like_card_data`` of every value (missing values are not card data)."""
    return values.map(looks_like_card_data, na_action="ignore").fillna(False).astype(bool)


def shown_name(name: str) -> str:
    """A header name as a message may print it (a header-less file's first row is data)."""
    return MASK if looks_like_card_data(name) else name
