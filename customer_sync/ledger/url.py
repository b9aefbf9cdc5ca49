"""Where the ledger is: a folder (SQLite, the embedded default) or a PostgreSQL URL.

A URL's user-info (user and password) and any ``password=`` query parameter are masked
whenever it is shown: in messages, logs and anything stored.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

DATABASE_SCHEMES: Final = ("postgresql://", "postgres://")
_QUERY_PASSWORD: Final = re.compile(r"(?i)(password=)[^&]*")


def is_database_url(state: object) -> bool:
    """Whether ``state`` names a PostgreSQL database rather than a folder."""
    return isinstance(state, str) and state.lower().startswith(DATABASE_SCHEMES)


def masked_url(url: str) -> str:
    """``url`` with its user-info and any password parameter replaced by ``***``."""
    scheme, rest = url.split("://", 1)
    authority, sep, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return _QUERY_PASSWORD.sub(r"\1***", f"{scheme}://{authority}{sep}{tail}")


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (in its user-info or a query parameter)."""
    try:
        parts = urlsplit(url)
        in_userinfo = parts.password is not None
    except ValueError:
        in_userinfo = ":" in url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[0]
    return in_userinfo or bool(_QUERY_PASSWORD.search(url))
