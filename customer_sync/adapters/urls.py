"""URLs as they may be shown or stored: never with their user-info (``user:password@``)."""

from __future__ import annotations

from yarl import URL


def has_user_info(url: str) -> bool:
    """Whether ``url`` carries a user name or password (``scheme://user:pw@host``)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        # unparseable: anything before an '@' in the authority may be a credential
        return "@" in url.split("://", 1)[-1].split("/", 1)[0]
    return bool(parsed.raw_user or parsed.raw_password)


def without_user_info(url: str) -> str:
    """``url`` with any user-info removed, safe for a log line, the ledger or a report."""
    if "@" not in url:
        return url  # the common case, and strings that are not URLs, untouched
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        scheme, _, rest = url.rpartition("://")
        authority, slash, path = rest.partition("/")
        host = authority.rpartition("@")[2]
        return f"{scheme}://{host}{slash}{path}" if scheme else f"{host}{slash}{path}"
    if not (parsed.raw_user or parsed.raw_password):
        return url
    return str(parsed.with_user(None))
