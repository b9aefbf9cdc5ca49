"""Choosing the ledger: a folder (SQLite) or a PostgreSQL URL, and URLs never shown whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from customer_sync.ledger.factory import ledger_location, open_ledger, work_folder
from customer_sync.ledger.postgres import PostgresLedger, run_lock_key
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.ledger.url import has_password, is_database_url, masked_url
from customer_sync.schemas.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_ledger_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CUSTOMER_SYNC_LEDGER_URL", "CUSTOMER_SYNC_STATE_DIR", "CUSTOMER_SYNC_WORK_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_the_location_is_the_option_then_the_url_then_the_folder_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ledger_location(None) == Path(".state")
    monkeypatch.setenv("CUSTOMER_SYNC_STATE_DIR", "/srv/state")
    assert ledger_location(None) == Path("/srv/state")
    monkeypatch.setenv("CUSTOMER_SYNC_LEDGER_URL", "postgresql://sync@db/ledger")
    assert ledger_location(None) == "postgresql://sync@db/ledger"
    assert ledger_location("here") == Path("here")
    assert ledger_location("postgres://db/x") == "postgres://db/x"


def test_a_url_ledger_keeps_its_run_files_in_the_work_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert work_folder(Path("/srv/state")) == Path("/srv/state")
    assert work_folder("postgresql://db/ledger") == Path(".state")
    monkeypatch.setenv("CUSTOMER_SYNC_WORK_DIR", "/scratch/sync")
    assert work_folder("postgresql://db/ledger") == Path("/scratch/sync")


def test_a_password_in_the_state_option_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="PGPASSWORD") as refused:
        ledger_location("postgresql://sync:hunter2@db/ledger")
    assert "hunter2" not in str(refused.value)
    assert "sync" not in str(refused.value).replace("customer-sync", "")
    with pytest.raises(ConfigError):
        ledger_location("postgresql://db/ledger?password=hunter2")


def test_a_password_in_the_environment_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMER_SYNC_LEDGER_URL", "postgresql://sync:hunter2@db/ledger")
    assert ledger_location(None) == "postgresql://sync:hunter2@db/ledger"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://sync:p%40ss@db:5432/ledger", "postgresql://***@db:5432/ledger"),
        ("postgres://sync@db/ledger", "postgres://***@db/ledger"),
        ("postgresql://db/ledger?sslmode=require", "postgresql://db/ledger?sslmode=require"),
        ("postgresql://db/l?password=x&sslmode=require", "postgresql://db/l?password=***&sslmode=require"),
        ("postgresql:///ledger?host=/run/pg", "postgresql:///ledger?host=/run/pg"),
    ],
)  # fmt: skip
def test_urls_are_shown_with_their_user_info_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_what_counts_as_a_database_url() -> None:
    assert is_database_url("postgresql://x/y") and is_database_url("POSTGRES://x/y")
    assert not is_database_url("./postgresql") and not is_database_url(Path("postgresql:"))
    assert has_password("postgresql://u:p@h/d") and not has_password("postgresql://u@h/d")


def test_open_ledger_picks_the_backend(tmp_path: Path, postgres_server: Any) -> None:
    with open_ledger(tmp_path / "state") as local:
        assert isinstance(local, SqliteLedger)
    with open_ledger(postgres_server.database()) as shared:
        assert isinstance(shared, PostgresLedger)
        assert shared.url.startswith("postgresql://***@127.0.0.1:")


def test_an_unreachable_server_is_a_one_line_config_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("customer_sync.ledger.postgres.CONNECT_TIMEOUT_S", 2)
    with pytest.raises(ConfigError, match="cannot connect to the ledger") as refused:
        open_ledger("postgresql://sync:hunter2@127.0.0.1:9/ledger")
    message = str(refused.value)
    assert "hunter2" not in message and "\n" not in message
    assert message.startswith("postgresql://***@127.0.0.1:9/ledger: ")


def test_a_read_only_opening_of_an_empty_database_is_a_clear_error(postgres_server: Any) -> None:
    with pytest.raises(ConfigError, match="no ledger at postgresql://\\*\\*\\*@"):
        open_ledger(postgres_server.database(), read_only=True)


def test_run_lock_keys_are_64_bit_and_stable() -> None:
    key = run_lock_key("20260509T131500Z-1a2b3c4d")
    assert key == run_lock_key("20260509T131500Z-1a2b3c4d")
    assert -(2**63) <= key < 2**63
    assert key != run_lock_key("20260509T131500Z-1a2b3c4e")
