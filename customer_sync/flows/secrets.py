"""The partner token kept in a Prefect Secret block, for scheduled runs on a Prefect server.

A deployment should not carry the token in its parameters or job variables: both are stored
in clear in Prefect's database and shown in the UI. The Secret block is stored encrypted
and is read only at run time, by the flow run itself.

Create it once per Prefect server (or workspace)::

    python -c "from prefect.blocks.system import Secret; \\
        Secret(value='...').save('customer-sync-api-token')"

``$CUSTOMER_SYNC_API_TOKEN`` in the worker's environment is the other way; where both are
set, the flow decides which wins (see docs/deploy.md).
"""

from __future__ import annotations

import logging

import httpx
from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound

from customer_sync.schemas.errors import ConfigError

logger = logging.getLogger(__name__)

TOKEN_BLOCK_NAME = "customer-sync-api-token"  # noqa: S105 (a block name, not a secret)
"""The Secret block holding the partner's static bearer token."""


def _is_unavailable(error: Exception) -> bool:
    """True when ``error`` means "no block to read", not "the block is broken".

    Prefect answers a missing block (or an unknown block type) with a ValueError caused by
    ObjectNotFound; an API that cannot be reached shows up as RuntimeError("Failed to reach
    API ...") or as a connection error. A block that exists but does not validate, or an API
    that refuses us (401/403), is a real problem and is raised.
    """
    if isinstance(error, ValueError):
        return isinstance(error.__cause__, ObjectNotFound)
    if isinstance(error, RuntimeError):
        return str(error).startswith("Failed to reach API")
    return isinstance(error, httpx.TransportError | OSError)


def _token(secret: Secret[object], name: str) -> str:
    value = secret.get()
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"the Prefect Secret block {name!r} must hold the partner token as a non-empty "
            "string (not JSON)"
        )
    return value.strip()


def _log_unavailable(name: str, error: Exception) -> None:
    if isinstance(error, ValueError):
        logger.debug("no Prefect Secret block %r", name)
    else:
        logger.warning(
            "cannot read the Prefect Secret block %r: the Prefect API is not reachable (%s)",
            name,
            type(error).__name__,
        )


def partner_token_from_block(name: str = TOKEN_BLOCK_NAME) -> str | None:
    """The partner token in the Secret block ``name``; None when no such block can be read.

    Safe to call from sync code and from inside an async flow (it uses Prefect's sync client).
    """
    try:
        secret = Secret.load(name, _sync=True)
    except Exception as error:
        if not _is_unavailable(error):
            raise
        _log_unavailable(name, error)
        return None
    return _token(secret, name)


async def apartner_token_from_block(name: str = TOKEN_BLOCK_NAME) -> str | None:
    """The same as :func:`partner_token_from_block`, awaited (does not block the loop)."""
    try:
        secret = await Secret.aload(name)
    except Exception as error:
        if not _is_unavailable(error):
            raise
        _log_unavailable(name, error)
        return None
    return _token(secret, name)


__all__ = ["TOKEN_BLOCK_NAME", "apartner_token_from_block", "partner_token_from_block"]
