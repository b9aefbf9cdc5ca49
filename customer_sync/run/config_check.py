"""The run's configuration, checked before anything reads the extract or stores a parameter.

A missing or refused partner URL, a batch size the partner refuses, a state folder or a
report path that cannot be written: each is one ``ConfigError`` line, found in a second,
not after the whole extract is prepared. The CLI calls ``check_configuration`` before it
calls the flow (Prefect stores a flow's parameters, so a URL with credentials must be
refused before that); the flows call it first too, for notebook and deployment callers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from customer_sync.adapters.partner_client import PartnerSettings, customers_url
from customer_sync.adapters.urls import has_user_info
from customer_sync.ledger.factory import ledger_location, work_folder
from customer_sync.schemas.contract import MAX_CUSTOMERS_PER_REQUEST as MAX_BATCH_SIZE
from customer_sync.schemas.errors import ConfigError

_PROBE_PREFIX = ".customer-sync-probe-"
DEFAULT_STATE_DIR = ".state"


def state_folder(state_dir: str | os.PathLike[str] | None) -> Path:
    """The run's local folder: the ledger's folder (the option, else
    $CUSTOMER_SYNC_STATE_DIR, else ./.state), or for a PostgreSQL ledger
    ($CUSTOMER_SYNC_LEDGER_URL or a URL option) $CUSTOMER_SYNC_WORK_DIR, else ./.state."""
    return work_folder(ledger_location(state_dir))


def check_configuration(
    *,
    api_url: str | None,
    dry_run: str | None,
    batch_size: int,
    concurrency: int,
    state_dir: str | os.PathLike[str],
    report: str | os.PathLike[str] | None,
) -> None:
    """Refuse, with one line, a configuration the run could not finish with.

    The partner URL (``api_url``, else ``$CUSTOMER_SYNC_API_URL``) must not carry
    credentials; unless ``dry_run``, it must be there, http(s), and plain http only to
    loopback. ``batch_size`` 1 to 50, ``concurrency`` at least 1, the state folder and the
    report's folder writable (probed with a file that is removed again).
    """
    check_partner_url(api_url, required=dry_run is None)
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ConfigError(
            f"--batch-size must be between 1 and {MAX_BATCH_SIZE} (the partner's limit per "
            f"request), not {batch_size}"
        )
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    check_writable_folder(Path(state_dir), "the state folder")
    if report is not None:
        check_writable_file(Path(report), "the report")


def check_partner_url(api_url: str | None, *, required: bool) -> None:
    """The chosen partner URL: no user-info ever; when ``required``, present and allowed.

    The messages never repeat a URL that carries credentials.
    """
    chosen = PartnerSettings.from_environment(api_url=api_url).api_url
    if chosen and has_user_info(chosen):
        raise ConfigError(
            "partner URL must not carry credentials (user:password@host); give the token "
            "in CUSTOMER_SYNC_API_TOKEN or a Secret block"
        )
    if required:
        customers_url(chosen)  # a ConfigError when missing, not http(s), or http off loopback


def check_writable_folder(folder: Path, what: str) -> None:
    """``folder`` (or, when it does not exist yet, the folder it would be created in) can
    take a new file."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise ConfigError(f"{folder}: {what} cannot be created: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=existing)
    except OSError as error:
        raise ConfigError(f"{folder}: {what} is not writable ({error.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: Path, what: str) -> None:
    """``path`` can be written: an existing file opened for writing (its content left as
    it is), or a new one in a writable folder."""
    if path.is_dir():
        raise ConfigError(f"{path}: {what} path is a folder")
    if not path.exists():
        check_writable_folder(path.parent, f"the folder of {what}")
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as error:
        raise ConfigError(f"{path}: {what} is not writable ({error.strerror})") from None
    os.close(fd)


def _nearest_existing(folder: Path) -> Path:
    candidate = folder.absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate
