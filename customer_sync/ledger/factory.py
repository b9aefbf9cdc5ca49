"""One way to open the ledger: ``open_ledger(state)`` picks the backend from ``state``.

``postgresql://`` or ``postgres://`` → ``PostgresLedger``; anything else is a folder →
``SqliteLedger`` (the embedded default). Where ``state`` comes from: ``--state`` (a flow's
``state_dir``), else ``$CUSTOMER_SYNC_LEDGER_URL``, else ``$CUSTOMER_SYNC_STATE_DIR``, else
``./.state``. A run's own files (spool, rejects, report) need a local folder either way: the
state folder for SQLite; for a URL, ``$CUSTOMER_SYNC_WORK_DIR``, else ``./.state``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from customer_sync.ledger.interface import Ledger
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.ledger.url import has_password, is_database_url, masked_url
from customer_sync.schemas.errors import ConfigError
from customer_sync.settings import LEDGER_URL_ENV, Settings

DEFAULT_STATE_DIR: Final = ".state"


def ledger_location(state: str | os.PathLike[str] | None) -> str | Path:
    """The ledger's URL, or its folder, from the option or the environment.

    A password written into ``--state`` is refused: flow parameters are recorded by
    Prefect. It belongs in ``$CUSTOMER_SYNC_LEDGER_URL``, ``PGPASSWORD`` or ``~/.pgpass``.
    """
    if state:
        chosen = os.fspath(state)
        if is_database_url(chosen) and has_password(chosen):
            raise ConfigError(
                f"--state {masked_url(chosen)}: a password in the ledger URL would be recorded "
                f"with the run's parameters; put it in ${LEDGER_URL_ENV}, PGPASSWORD or "
                "~/.pgpass instead"
            )
    else:
        settings = Settings.from_environment()
        chosen = settings.ledger_url or settings.state_dir or DEFAULT_STATE_DIR
    return chosen if is_database_url(chosen) else Path(chosen)


def work_folder(location: str | Path) -> Path:
    """The local folder for a run's files (``runs/<run_id>/``)."""
    if isinstance(location, Path):
        return location
    return Path(Settings.from_environment().work_dir or DEFAULT_STATE_DIR)


def open_ledger(state: str | os.PathLike[str] | Path, *, read_only: bool = False) -> Ledger:
    """Open the ledger ``state`` names: a PostgreSQL URL or a state folder."""
    if is_database_url(state):
        from customer_sync.ledger.postgres import PostgresLedger  # psycopg only when it is used

        return PostgresLedger.open(str(state), read_only=read_only)
    return SqliteLedger.open(Path(state), read_only=read_only)
