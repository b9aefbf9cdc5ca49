"""Shared fixtures: a Prefect test harness for flow tests, and a private PREFECT_HOME."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect must not touch the user's ~/.prefect; set before anything imports prefect.
_PREFECT_HOME = tempfile.mkdtemp(prefix="customer-sync-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
# and the project's own Prefect defaults (our loggers in the run's log), as the CLI sets them
from customer_sync.flows.prefect_setup import configure_prefect  # noqa: E402

configure_prefect()

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for every flow test of the session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One real PostgreSQL server on 127.0.0.1 for the session (tests/postgres_support.py);
    fails, never skips, when the machine has no PostgreSQL binaries."""
    from tests.postgres_support import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()
