"""Every environment variable customer-sync reads, in one place, read once per call.

``Settings.from_environment()`` reads them all at once into a frozen value; code that needs
one takes it from there, never from ``os.environ`` by hand. (The partner API's own
configuration, ``CUSTOMER_SYNC_API_URL`` and the rest, is ``PartnerSettings`` in
``adapters/partner_client.py``: a pydantic-settings model that validates it.)

A small dataclass, not pydantic-settings: the CLI reads Prefect's variables here before it
starts Prefect's temporary server, and that must happen before any heavy import (importing
pydantic-settings alone costs 0.3-0.9 s on a loaded machine).

Reading changes nothing: importing any module of this package leaves ``os.environ`` as it
was (``tests/test_settings.py``). The only writes are the explicit
``flows.prefect_setup.configure_prefect()`` / ``start_prefect_server()``, called by the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

LEDGER_URL_ENV: Final = "CUSTOMER_SYNC_LEDGER_URL"
STATE_DIR_ENV: Final = "CUSTOMER_SYNC_STATE_DIR"
WORK_DIR_ENV: Final = "CUSTOMER_SYNC_WORK_DIR"
API_TOKEN_ENV: Final = "CUSTOMER_SYNC_API_TOKEN"  # noqa: S105 - the variable's name
STARTUP_TIMEOUT_ENV: Final = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
ALERT_HELD_BACK_SHARE_ENV: Final = "CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE"


def _text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value; unset and empty are alike (None)."""
    return environ.get(name) or None


@dataclass(frozen=True)
class Settings:
    """The environment as customer-sync sees it (empty values read as unset)."""

    ledger_url: str | None = None
    """``CUSTOMER_SYNC_LEDGER_URL``: a PostgreSQL ledger, when ``--state`` is not given."""
    state_dir: str | None = None
    """``CUSTOMER_SYNC_STATE_DIR``: the SQLite ledger's folder, after the URL."""
    work_dir: str | None = None
    """``CUSTOMER_SYNC_WORK_DIR``: a URL ledger's local folder for run files."""
    api_token: str | None = field(default=None, repr=False)
    """``CUSTOMER_SYNC_API_TOKEN``: the bearer token the stand-in partner requires."""
    alert_held_back_share: str | None = None
    """``CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE`` as written (parsed in ``flows/events.py``)."""
    prefect_api_url: str | None = None
    """``PREFECT_API_URL``: a Prefect server to use (then none is started)."""
    prefect_home: str | None = None
    prefect_profiles_path: str | None = None
    prefect_profile: str | None = None
    prefect_ephemeral: str = "true"
    """``PREFECT_SERVER_ALLOW_EPHEMERAL_MODE``, else ``PREFECT_SERVER_EPHEMERAL_ENABLED``."""
    prefect_startup_timeout: str | None = None
    """``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` as written (parsed by its user)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable now (``os.environ`` unless ``environ`` is given)."""
        env = os.environ if environ is None else environ
        return cls(
            ledger_url=_text(env, LEDGER_URL_ENV),
            state_dir=_text(env, STATE_DIR_ENV),
            work_dir=_text(env, WORK_DIR_ENV),
            api_token=_text(env, API_TOKEN_ENV),
            alert_held_back_share=_text(env, ALERT_HELD_BACK_SHARE_ENV),
            prefect_api_url=_text(env, "PREFECT_API_URL"),
            prefect_home=_text(env, "PREFECT_HOME"),
            prefect_profiles_path=_text(env, "PREFECT_PROFILES_PATH"),
            prefect_profile=_text(env, "PREFECT_PROFILE"),
            prefect_ephemeral=(
                _text(env, "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")
                or env.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
            ),
            prefect_startup_timeout=env.get(STARTUP_TIMEOUT_ENV),
        )
