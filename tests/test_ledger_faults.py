"""A ledger that cannot be used is a one-line configuration error (exit 2), not a
traceback, and nothing is read or sent.

Read-only state: the tests run as root, where file modes do not stop writes and no
read-only mount is available, so "cannot write the state" is injected as the state path
being a regular file (and the ledger path a folder): the same ``open``/``mkdir`` failures
a read-only folder gives (the messages carry the OS's reason either way).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.ledger.sqlite import LEDGER_FILE, SqliteLedger
from customer_sync.schemas.errors import ConfigError
from tests.flow_support import write_synthetic


def _filled_ledger(state: Path) -> Path:
    """A closed ledger of a few hundred KB (so that half of it misses whole pages)."""
    with SqliteLedger.open(state) as ledger:
        for _ in range(200):
            ledger.finish_run(ledger.start_run({"padding": "x" * 2_000}), "completed", {})
    return state / LEDGER_FILE


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8_192))


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _damaged_pages(path: Path) -> None:
    # a valid header, garbage after it: SQLite's own error, not our header check
    data = bytearray(path.read_bytes())
    data[100:] = os.urandom(len(data) - 100)
    path.write_bytes(bytes(data))


def _newer_schema(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage": (_garbage, "not a usable customer-sync ledger"),
    "truncated": (_truncated, "truncated"),
    "damaged-pages": (_damaged_pages, "not a usable customer-sync ledger|cannot open"),
    "newer-schema": (_newer_schema, "schema version 99"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_unusable_ledger_is_refused_by_name(tmp_path: Path, fault: str) -> None:
    path = _filled_ledger(tmp_path)
    damage, expected = FAULTS[fault]
    damage(path)
    with pytest.raises(ConfigError, match=expected) as refused:
        SqliteLedger.open(tmp_path)
    assert str(refused.value).startswith(str(path)) and "\n" not in str(refused.value)


def test_an_empty_ledger_file_is_a_new_ledger(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(b"")
    with SqliteLedger.open(tmp_path) as ledger:
        assert ledger.runs() == []


def test_a_state_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the state folder should be")
    with pytest.raises(ConfigError, match="Not a directory"):
        SqliteLedger.open(not_a_folder)
    (tmp_path / "other" / LEDGER_FILE).mkdir(parents=True)
    with pytest.raises(ConfigError, match="Is a directory"):
        SqliteLedger.open(tmp_path / "other")


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("fault", ["truncated", "not-a-folder"])
def test_the_cli_says_it_in_one_line_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    state = tmp_path / "state"
    if fault == "truncated":
        _truncated(_filled_ledger(state))
    else:
        state.write_text("not a folder")
    with serve_stub_in_thread() as stub:
        capsys.readouterr()
        status = main(["run", str(source), "--api-url", stub.url, "--state", str(state)])
        requests = stub.counters.requests
    errors = capsys.readouterr().err
    ours = [line for line in errors.splitlines() if line.startswith("customer-sync:")]
    assert status == 2 and len(ours) == 1 and "Traceback" not in errors, errors[-3000:]
    assert str(state) in ours[0]
    assert requests == 0
