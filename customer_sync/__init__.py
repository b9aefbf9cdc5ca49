"""customer-sync: validate flat customer, account and card extracts and deliver them to the
partner API as nested Customer documents.

``from customer_sync import validate, plan, sync`` (and ``runs``, ``history``): the Python
entry points (``customer_sync/api.py``), imported on first use so that importing the
package stays cheap.

Importing this package changes no environment variable: Prefect's settings are put in place
by ``customer_sync.flows.prefect_setup.configure_prefect()``, which the CLI calls (a notebook
calls it before importing ``customer_sync.flows.sync``).
"""

from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from customer_sync.api import history, plan, runs, sync, validate

__all__ = ["history", "plan", "runs", "sync", "validate"]

__version__ = "0.1.0"
"""The distribution's version (pyproject.toml's; a test holds them together): read here,
``customer-sync --version`` needs no importlib.metadata (about 0.1 s of imports)."""

# INFO from our own modules tells the story of a run (they never log payloads or secrets).
if _logging.getLogger(__name__).level == _logging.NOTSET:
    _logging.getLogger(__name__).setLevel(_logging.INFO)


def __getattr__(name: str) -> Any:
    """The entry points of ``customer_sync.api``, imported when first asked for."""
    if name in __all__:
        from customer_sync import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
