"""customer-sync: validate flat customer, account and card extracts and deliver them to the
partner API as nested Customer documents.

Importing this package changes no environment variable: Prefect's settings are put in place
by ``customer_sync.flows.prefect_setup.configure_prefect()``, which the CLI calls (a notebook
calls it before importing ``customer_sync.flows.sync``).
"""

import logging as _logging

__version__ = "0.1.0"
"""The distribution's version (pyproject.toml's; a test holds them together): read here,
``customer-sync --version`` needs no importlib.metadata (about 0.1 s of imports)."""

# INFO from our own modules tells the story of a run (they never log payloads or secrets).
if _logging.getLogger(__name__).level == _logging.NOTSET:
    _logging.getLogger(__name__).setLevel(_logging.INFO)
