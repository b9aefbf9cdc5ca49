"""The ledger on both backends, on real databases: round-trips, transactions, crashes.

Every test that takes the ``state`` fixture runs twice: on a SQLite state folder and on a
fresh database of a real PostgreSQL server (tests/postgres_support.py, started by the test
run). Tests about SQLite's own machinery (file modes, WAL, the checkpointer, lock files,
SIGKILL at every SQLite statement, SQLite readers) are marked ``@sqlite_only``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from customer_sync.adapters.delivery import DeliveryOutcome
from customer_sync.ledger import sqlite as ledger_module
from customer_sync.ledger._postgres_sql import SCHEMA_VERSION as PG_SCHEMA_VERSION
from customer_sync.ledger._sqlite_sql import SCHEMA_VERSION
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.interface import Ledger, LedgerWriteError
from customer_sync.ledger.sqlite import LEDGER_FILE, SqliteLedger
from customer_sync.ledger.store import LedgerStore
from customer_sync.ledger.url import is_database_url
from customer_sync.schemas.errors import ConfigError
from customer_sync.schemas.records import Batch, BatchOutcome, Method
from customer_sync.transforms.plan import plan_customers

ROOT = Path(__file__).resolve().parents[1]


class ANY_JSON:
    """Equal to a JSON column holding ``value``, whichever backend read it."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return _json_value(other) == self.value

    def __repr__(self) -> str:
        return f"ANY_JSON({self.value!r})"


def _ids(prefix: str, n: int = 3) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i}" for i in range(n))


def _doc(cid: str) -> bytes:
    return orjson.dumps({"sourceCustomerId": cid, "postalCode": "01234", "accounts": []})


def _batch(batch_id: str, ids: tuple[str, ...], method: Method = "POST") -> Batch:
    return Batch(batch_id, method, ids, tuple(_doc(c) for c in ids))


def _outcome(batch: Batch, status: str = "acknowledged", **changes: object) -> BatchOutcome:
    fields: dict[str, object] = {
        "batch_id": batch.batch_id,
        "method": batch.method,
        "customer_ids": batch.customer_ids,
        "status": status,
        "attempts": 1 if status == "acknowledged" else 4,
        "http_status": {"acknowledged": 200, "rejected": 400, "failed": 503}.get(status),
        "request_id": f"req-{batch.batch_id}",
        "error": None if status == "acknowledged" else f"HTTP {status}",
    }
    fields.update(changes)
    return BatchOutcome(**fields)  # type: ignore[arg-type]


def _fingerprints(batch: Batch, version: str = "v1") -> dict[str, str]:
    return {c: f"{version}:{c}" for c in batch.customer_ids}


def _documents(batch: Batch) -> dict[str, bytes]:
    return dict(zip(batch.customer_ids, batch.documents, strict=True))


def _send(
    ledger: SqliteLedger,
    run_id: str,
    batch: Batch,
    status: str = "acknowledged",
    version: str = "v1",
    **changes: object,
) -> None:
    ledger.mark_sending(run_id, batch)
    ledger.record_outcome(
        run_id, _outcome(batch, status, **changes), _fingerprints(batch, version), _documents(batch)
    )


State = Any  # a SQLite state folder (Path) or a PostgreSQL URL (str)
DB_ERRORS = (sqlite3.Error, psycopg.Error)


def _query(state: State, sql: str) -> list[tuple[Any, ...]]:
    """Read like a notebook would: a separate read-only connection."""
    if is_database_url(state):
        with psycopg.connect(state, autocommit=True) as pg:
            pg.execute("SET default_transaction_read_only = on")
            return [tuple(row) for row in pg.execute(sql).fetchall()]
    uri = f"{(state / LEDGER_FILE).as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return db.execute(sql).fetchall()


def _execute(state: State, sqlite_sql: str, postgres_sql: str) -> None:
    """Change the database behind the ledger's back (fault injection), as each speaks."""
    if is_database_url(state):
        with psycopg.connect(state, autocommit=True) as pg:
            pg.execute(postgres_sql)
        return
    with sqlite3.connect(state / LEDGER_FILE) as db:
        db.execute(sqlite_sql)


def _fail_dead_letter_of(state: State, customer_id: str) -> None:
    """Make the database refuse the dead letter of ``customer_id`` ('disk says no')."""
    _execute(
        state,
        f"CREATE TRIGGER boom BEFORE INSERT ON dead_letters WHEN NEW.source_customer_id = "
        f"'{customer_id}' BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.source_customer_id = '{customer_id}' THEN RAISE EXCEPTION 'disk says no'; "
        "END IF; RETURN NEW; END $$; CREATE TRIGGER boom BEFORE INSERT ON dead_letters "
        "FOR EACH ROW EXECUTE FUNCTION boom()",
    )


def _json_value(value: object) -> object:
    """A JSON column as read: text from SQLite, already decoded from PostgreSQL's jsonb."""
    return orjson.loads(value) if isinstance(value, str) else value


@pytest.fixture(params=["sqlite", "postgresql"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    """Where the ledger is: a fresh SQLite folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "state"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.database()
    yield url
    server.drop(url)


# tests about SQLite's own files and machinery
sqlite_only = pytest.mark.parametrize("state", ["sqlite"], indirect=True)


@pytest.fixture
def ledger(state: State) -> Iterator[Any]:
    with open_ledger(state) as opened:
        yield opened


def _patch_both(monkeypatch: pytest.MonkeyPatch, name: str, value: int) -> None:
    monkeypatch.setattr(LedgerStore, name, value)  # both stores' calls are LedgerStore's


# --- opening -----------------------------------------------------------------------------
@sqlite_only
def test_open_creates_an_owner_only_wal_database_with_a_versioned_schema(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a")), "failed")  # card data is in the file now

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in (LEDGER_FILE, f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert _query(state, "PRAGMA journal_mode") == [("wal",)]
    assert _query(state, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@sqlite_only
def test_an_existing_ledger_readable_by_others_is_narrowed_to_its_owner(state: Path) -> None:
    open_ledger(state).close()
    (state / LEDGER_FILE).chmod(0o644)

    open_ledger(state).close()

    assert stat.S_IMODE((state / LEDGER_FILE).stat().st_mode) == 0o600


def test_reopening_keeps_everything(state: Path) -> None:
    with open_ledger(state) as first:
        run_id = first.start_run({"source": "landing/"})
        _send(first, run_id, _batch("b1", _ids("a")))
        first.finish_run(run_id, "succeeded", {"customers_created": 3})

    with open_ledger(state) as second:
        assert second.acknowledged_fingerprints(_ids("a")) == {c: f"v1:{c}" for c in _ids("a")}
        assert second.last_run() is not None


def test_a_ledger_from_a_newer_release_is_refused(state: Path) -> None:
    open_ledger(state).close()
    _execute(
        state,
        f"PRAGMA user_version = {SCHEMA_VERSION + 1}",
        # its own count: PostgreSQL has one more step (the delivery lock's holders table)
        f"UPDATE ledger_schema SET version = {PG_SCHEMA_VERSION + 1}",
    )

    with pytest.raises(ConfigError, match="schema version"):
        open_ledger(state)


def test_read_only_opening_reads_and_cannot_write(state: Path) -> None:
    with open_ledger(state) as writer:
        run_id = writer.start_run({})
        _send(writer, run_id, _batch("b1", _ids("a")))

    with open_ledger(state, read_only=True) as reader:
        assert reader.known_customer_count() == 3
        with pytest.raises(DB_ERRORS, match="read-only"):
            reader.start_run({})
        with pytest.raises(DB_ERRORS, match=r"read-?only"):
            reader.mark_sending("r", _batch("b2", _ids("b")))
    if not is_database_url(state):
        assert not (state / "locks" / "r.lock").exists()


def test_read_only_opening_of_a_missing_ledger_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ledger"):
        open_ledger(tmp_path / "nowhere", read_only=True)


def test_sqlite_ledger_implements_the_protocol(ledger: SqliteLedger) -> None:
    typed: Ledger = ledger  # checked by mypy; the call proves the object is usable as one
    assert typed.runs() == []


# --- runs --------------------------------------------------------------------------------
def test_runs_round_trip_with_secrets_redacted(ledger: SqliteLedger) -> None:
    first = ledger.start_run(
        {"source": Path("landing"), "api_token": "s3cret", "auth": {"client_secret": "x"}}
    )
    ledger.finish_run(first, "succeeded", {"customers_read": 10, "customers_created": 10})
    second = ledger.start_run({"source": "landing", "full_refresh": True})

    runs = ledger.runs()
    assert [r.run_id for r in runs] == [second, first]
    assert runs[1].parameters == {
        "source": "landing",
        "api_token": "***",
        "auth": {"client_secret": "***"},
    }
    assert runs[1].status == "succeeded"
    assert runs[1].counts == {"customers_read": 10, "customers_created": 10}
    assert runs[1].finished_at is not None
    assert runs[0].status == "running"
    assert runs[0].finished_at is None
    assert runs[0].pid == os.getpid()
    assert ledger.last_run() == runs[0]
    assert ledger.runs(limit=1) == [runs[0]]


def test_no_runs_yet(ledger: SqliteLedger) -> None:
    assert ledger.last_run() is None


def test_finishing_an_unknown_run_is_an_error(ledger: SqliteLedger) -> None:
    with pytest.raises(KeyError, match="no run"):
        ledger.finish_run("nope", "succeeded", {})


# --- batches and acknowledged fingerprints -----------------------------------------------
def test_a_batch_is_sending_before_its_outcome_and_acknowledged_after(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"))

    ledger.mark_sending(run_id, batch)
    assert _query(state, "SELECT state, attempts FROM batches") == [("sending", 0)]
    assert ledger.acknowledged_fingerprints(batch.customer_ids) == {}

    ledger.record_outcome(run_id, _outcome(batch), _fingerprints(batch), _documents(batch))
    assert _query(
        state, "SELECT state, attempts, http_status, request_id, error, customers FROM batches"
    ) == [("acknowledged", 1, 200, "req-b1", None, 3)]
    assert ledger.acknowledged_fingerprints(batch.customer_ids) == _fingerprints(batch)
    assert ledger.known_customer_count() == 3


def test_who_acknowledged_a_customer_is_readable_from_the_view(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a")))
    _send(ledger, run_id, _batch("b2", _ids("a")[:1], "PUT"), version="v2")

    rows = _query(
        state,
        "SELECT source_customer_id, fingerprint, run_id, batch_id, request_id, method "
        "FROM customer_acknowledgements WHERE acknowledged_at IS NOT NULL "
        "ORDER BY source_customer_id",
    )
    assert rows == [
        ("a-0", "v2:a-0", run_id, "b2", "req-b2", "PUT"),
        ("a-1", "v1:a-1", run_id, "b1", "req-b1", "POST"),
        ("a-2", "v1:a-2", run_id, "b1", "req-b1", "POST"),
    ]


def test_acknowledged_fingerprints_returns_only_known_ids(
    ledger: SqliteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_both(monkeypatch, "ID_CHUNK", 4)  # several chunks in one call
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 10))
    _send(ledger, run_id, batch)

    asked = [*_ids("a", 10), "unknown", "a-3", 'quo"te']

    assert ledger.acknowledged_fingerprints(asked) == _fingerprints(batch)
    assert ledger.acknowledged_fingerprints([]) == {}


def test_fifty_thousand_ids_in_one_call(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    for b in range(100):
        _send(ledger, run_id, _batch(f"b{b}", _ids(f"c{b}", 50)))

    asked = [f"c{b}-{i}" for b in range(1000) for i in range(50)]

    found = ledger.acknowledged_fingerprints(asked)
    assert len(found) == 5_000
    assert found["c99-49"] == "v1:c99-49"


def test_an_outcome_without_mark_sending_is_recorded(ledger: SqliteLedger, state: Path) -> None:
    """A split sub-batch may carry a new batch id that was never marked."""
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a")))
    part = _batch("b1.2", _ids("a")[1:])

    ledger.record_outcome(run_id, _outcome(part), _fingerprints(part, "v2"), _documents(part))

    assert _query(state, "SELECT batch_id, state FROM batches ORDER BY batch_key") == [
        ("b1", "acknowledged"),
        ("b1.2", "acknowledged"),
    ]
    assert ledger.acknowledged_fingerprints(["a-1"]) == {"a-1": "v2:a-1"}


def test_a_status_that_is_not_an_outcome_is_refused(ledger: SqliteLedger) -> None:
    batch = _batch("b1", _ids("a"))
    with pytest.raises(ValueError, match="cannot record status planned"):
        ledger.record_outcome("r", _outcome(batch, "planned"), _fingerprints(batch), {})


# --- dead letters ------------------------------------------------------------------------
def test_a_failed_batch_dead_letters_every_customer_with_the_answer(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"), "PUT")

    _send(ledger, run_id, batch, "failed", error="HTTP 503 after 4 attempts")

    letters = ledger.dead_letters()
    assert ledger.dead_letter_ids() == set(batch.customer_ids)
    assert [d.source_customer_id for d in letters] == list(batch.customer_ids)
    first = letters[0]
    assert (first.kind, first.method, first.http_status) == ("failed", "PUT", 503)
    assert first.answer == "HTTP 503 after 4 attempts"
    assert first.document == _doc("a-0")
    assert first.fingerprint == "v1:a-0"
    assert (first.failures, first.run_id, first.batch_id) == (1, run_id, "b1")
    assert first.request_id == "req-b1"
    assert ledger.acknowledged_fingerprints(batch.customer_ids) == {}


def test_a_split_batch_acknowledges_the_rest_and_dead_letters_the_rejected(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 5))
    answer = '[{"field": "accounts[0].cards[0].networkIdentifier", "message": "invalid"}]'

    _send(ledger, run_id, batch, "acknowledged", rejected={"a-3": answer})

    assert set(ledger.acknowledged_fingerprints(batch.customer_ids)) == {
        "a-0",
        "a-1",
        "a-2",
        "a-4",
    }
    (letter,) = ledger.dead_letters()
    assert (letter.source_customer_id, letter.kind, letter.answer) == ("a-3", "rejected", answer)
    assert _query(state, "SELECT acknowledged, rejected, failed FROM batches") == [(4, 1, 0)]


def test_a_batch_rejected_whole_dead_letters_every_customer(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 2))

    _send(ledger, run_id, batch, "rejected", error="400 unreadable body")

    answers = {d.source_customer_id: (d.kind, d.answer) for d in ledger.dead_letters()}
    assert answers == {c: ("rejected", "400 unreadable body") for c in _ids("a", 2)}


def test_a_rejected_outcome_naming_customers_acknowledged_the_others(
    ledger: SqliteLedger,
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 3))

    _send(ledger, run_id, batch, "rejected", error="1 of 3 rejected", rejected={"a-0": "bad"})

    assert set(ledger.acknowledged_fingerprints(batch.customer_ids)) == {"a-1", "a-2"}
    assert {d.source_customer_id: d.answer for d in ledger.dead_letters()} == {"a-0": "bad"}


def test_a_delivery_outcome_is_taken_at_its_word(ledger: SqliteLedger, state: Path) -> None:
    """The delivery lists what it acknowledged: a failed batch may be partly delivered."""
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 4))
    outcome = DeliveryOutcome(
        batch_id="b1",
        method="POST",
        customer_ids=batch.customer_ids,
        status="failed",
        attempts=6,
        http_status=503,
        request_id="b1-6",
        error="gave up after 5 attempts: HTTP 503",
        rejected={"a-1": "networkIdentifier: invalid"},
        acknowledged=("a-0", "a-3"),
        request_ids=("b1-1", "b1-2", "b1-6"),
    )
    ledger.mark_sending(run_id, batch)

    ledger.record_outcome(run_id, outcome, _fingerprints(batch), _documents(batch))

    assert set(ledger.acknowledged_fingerprints(batch.customer_ids)) == {"a-0", "a-3"}
    letters = {d.source_customer_id: (d.kind, d.answer) for d in ledger.dead_letters()}
    assert letters == {
        "a-1": ("rejected", "networkIdentifier: invalid"),
        "a-2": ("failed", "gave up after 5 attempts: HTTP 503"),
    }
    assert _query(
        state, "SELECT state, acknowledged, rejected, failed, request_ids FROM batches"
    ) == [("failed", 2, 1, 1, ANY_JSON(["b1-1", "b1-2", "b1-6"]))]


def test_a_repeated_failure_refreshes_the_dead_letter(ledger: SqliteLedger) -> None:
    first_run = ledger.start_run({})
    _send(ledger, first_run, _batch("b1", _ids("a", 1)), "failed", error="timeout")
    (before,) = ledger.dead_letters()
    second_run = ledger.start_run({})

    _send(ledger, second_run, _batch("b9", _ids("a", 1), "PUT"), "rejected", version="v2")

    (after,) = ledger.dead_letters()
    assert after.failures == 2
    assert after.first_failed_at == before.first_failed_at
    assert after.last_failed_at >= before.last_failed_at
    assert (after.run_id, after.batch_id, after.kind, after.method) == (
        second_run,
        "b9",
        "rejected",
        "PUT",
    )
    assert after.fingerprint == "v2:a-0"


def test_dead_letters_are_read_page_by_page(
    ledger: SqliteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_both(monkeypatch, "PAGE", 2)
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a", 5)), "failed")

    assert [d.source_customer_id for d in ledger.iter_dead_letters()] == list(_ids("a", 5))
    assert len(ledger.dead_letters()) == 5


def test_dead_letter_ids_among_a_chunk(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a", 5)), "failed")

    assert ledger.dead_letter_ids(["a-1", "a-4", "b-0"]) == {"a-1", "a-4"}
    assert ledger.dead_letter_ids([]) == set()
    assert ledger.dead_letter_ids() == set(_ids("a", 5))


def test_a_later_acknowledgement_clears_the_dead_letter(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a")), "failed")
    _send(ledger, run_id, _batch("b2", _ids("z", 1)), "failed")

    _send(ledger, run_id, _batch("b3", _ids("a")))

    assert ledger.dead_letter_ids() == {"z-0"}


def test_dead_letters_are_exported_owner_only_without_documents(
    ledger: SqliteLedger, tmp_path: Path
) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a", 2)), "failed", error="HTTP 503")
    out = tmp_path / "exports" / "dead.jsonl"
    out.parent.mkdir()
    out.write_text("old content\n")
    out.chmod(0o644)

    written = ledger.export_dead_letters(out)

    assert written == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["sourceCustomerId"] for line in lines] == ["a-0", "a-1"]
    assert lines[0] | {"firstFailedAt": None, "lastFailedAt": None} == {
        "sourceCustomerId": "a-0",
        "method": "POST",
        "kind": "failed",
        "httpStatus": 503,
        "requestId": "req-b1",
        "answer": "HTTP 503",
        "failures": 1,
        "firstFailedAt": None,
        "lastFailedAt": None,
        "runId": run_id,
        "batchId": "b1",
        "fingerprint": "v1:a-0",
    }
    assert b"01234" not in out.read_bytes()  # no postal code (nor any document field)
    assert [p.name for p in out.parent.iterdir()] == ["dead.jsonl"]  # no temp file left


def test_dead_letters_are_exported_with_documents_on_request(
    ledger: SqliteLedger, tmp_path: Path
) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a", 1)), "failed")
    out = tmp_path / "dead.jsonl"

    ledger.export_dead_letters(out, include_documents=True)

    (line,) = [orjson.loads(raw) for raw in out.read_bytes().splitlines()]
    assert line["document"] == orjson.loads(_doc("a-0"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_exporting_no_dead_letters_writes_an_empty_file(
    ledger: SqliteLedger, tmp_path: Path
) -> None:
    assert ledger.export_dead_letters(tmp_path / "dead.jsonl") == 0
    assert (tmp_path / "dead.jsonl").read_bytes() == b""


# --- transactions ------------------------------------------------------------------------
def test_a_failure_mid_write_leaves_nothing_half_written(ledger: SqliteLedger, state: Path) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b0", _ids("z", 1)), "failed")
    batch = _batch("b1", (*_ids("a", 4), "z-0"))
    ledger.mark_sending(run_id, batch)
    # the database itself fails the last statement of the transaction, after the batch row,
    # the acknowledgements and the dead-letter deletion were written
    _fail_dead_letter_of(state, "a-3")

    with pytest.raises(DB_ERRORS, match="disk says no"):
        ledger.record_outcome(
            run_id,
            _outcome(batch, rejected={"a-3": "bad"}),
            _fingerprints(batch),
            _documents(batch),
        )

    assert _query(state, "SELECT batch_id, state FROM batches WHERE batch_id = 'b1'") == [
        ("b1", "sending")
    ]
    assert ledger.acknowledged_fingerprints(batch.customer_ids) == {}
    assert ledger.dead_letter_ids() == {"z-0"}
    _send(ledger, run_id, _batch("b2", _ids("c", 1)))  # the connection is usable again


def test_a_missing_document_fails_before_anything_is_written(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"))
    ledger.mark_sending(run_id, batch)

    with pytest.raises(KeyError, match="a-1"):
        ledger.record_outcome(
            run_id, _outcome(batch, "failed"), _fingerprints(batch), {"a-0": b"{}"}
        )

    assert _query(state, "SELECT state FROM batches") == [("sending",)]
    assert ledger.dead_letter_ids() == set()


@sqlite_only
def test_checkpoints_run_on_their_own_thread_until_close(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 5)

    def checkpoint_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("ledger-checkpoint")]

    with open_ledger(state) as ledger:
        run_id = ledger.start_run({})
        for b in range(20):
            _send(ledger, run_id, _batch(f"b{b}", _ids(f"c{b}")))
        assert checkpoint_threads() == [f"ledger-checkpoint-{LEDGER_FILE}"]
        assert _query(state, "PRAGMA wal_autocheckpoint") == [(1000,)]  # others keep theirs

    assert checkpoint_threads() == []
    assert not (state / f"{LEDGER_FILE}-wal").exists()  # the last close checkpointed it all
    assert _query(state, "SELECT count(*) FROM acknowledged") == [(60,)]


def test_threads_can_share_one_ledger(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})

    def worker(n: int) -> None:
        for b in range(25):
            _send(ledger, run_id, _batch(f"t{n}-{b}", _ids(f"t{n}-{b}", 4)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ledger.known_customer_count() == 4 * 25 * 4


# --- group commit: the event loop's writes ----------------------------------------------
def _queue(ledger: SqliteLedger, run_id: str, batch: Batch, status: str = "acknowledged") -> None:
    ledger.queue_outcome(run_id, _outcome(batch, status), _fingerprints(batch), _documents(batch))


async def _held_writer(ledger: SqliteLedger, run_id: str) -> asyncio.Future[None]:
    """Hold the writer thread (the caller holds ``ledger._lock``): it takes a mark of batch
    ``held`` and waits for the lock, so everything queued next is committed together."""
    held = asyncio.ensure_future(ledger.amark_sending(run_id, _batch("held", _ids("h", 1))))
    await asyncio.sleep(0.05)
    return held


async def test_a_mark_is_committed_when_amark_sending_returns(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"))

    await ledger.amark_sending(run_id, batch)
    assert _query(state, "SELECT batch_id, state FROM batches") == [("b1", "sending")]

    _queue(ledger, run_id, batch)
    await ledger.aflush()
    assert _query(state, "SELECT state, customers, acknowledged FROM batches") == [
        ("acknowledged", 3, 3)
    ]
    assert ledger.acknowledged_fingerprints(batch.customer_ids) == _fingerprints(batch)


async def test_a_queued_outcome_is_committed_before_any_later_mark(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    first, second = _batch("b1", _ids("a")), _batch("b2", _ids("b"))
    await ledger.amark_sending(run_id, first)

    _queue(ledger, run_id, first, "failed")
    await ledger.amark_sending(run_id, second)

    assert _query(state, "SELECT batch_id, state FROM batches ORDER BY batch_key") == [
        ("b1", "failed"),
        ("b2", "sending"),
    ]
    assert ledger.dead_letter_ids() == set(first.customer_ids)


async def test_an_outcome_queued_while_the_writer_sleeps_wakes_it(
    ledger: SqliteLedger, state: Path
) -> None:
    # after a quiet LINGER the writer thread stops checking the queue and sleeps: an outcome
    # queued then must wake it (while it still checks, an outcome is found without one)
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"))
    await ledger.amark_sending(run_id, batch)
    await asyncio.sleep(0.1)

    _queue(ledger, run_id, batch)  # no mark, no flush follows
    queued = time.monotonic()
    while _query(state, "SELECT state FROM batches") != [("acknowledged",)]:
        assert time.monotonic() - queued < 30  # a hang guard only: never woken, never written
        await asyncio.sleep(0.001)


def test_fingerprints_in_another_order_or_with_more_ids_are_read_by_id(
    ledger: SqliteLedger,
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a", 4))
    given = dict(reversed(_fingerprints(batch).items())) | {"other": "x"}
    ledger.mark_sending(run_id, batch)
    ledger.record_outcome(run_id, _outcome(batch), given, _documents(batch))

    assert ledger.acknowledged_fingerprints([*batch.customer_ids, "other"]) == _fingerprints(batch)


async def test_a_queued_outcome_with_no_mark_after_it_is_committed_soon(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batch = _batch("b1", _ids("a"))
    await ledger.amark_sending(run_id, batch)

    queued = time.monotonic()
    _queue(ledger, run_id, batch)  # no mark, no flush follows: LINGER (5 ms) bounds the wait
    while _query(state, "SELECT state FROM batches") != [("acknowledged",)]:
        assert time.monotonic() - queued < 1.0  # generous: a busy machine stalls threads
        await asyncio.sleep(0.001)


async def test_writes_queued_meanwhile_share_one_transaction(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    batches = [_batch(f"b{n}", _ids(f"c{n}")) for n in range(20)]
    commits: list[int] = []
    commit = ledger._writer._commit  # count the writer's transactions, on either backend

    def counted(writes: list[object]) -> None:
        commits.append(len(writes))
        commit(writes)

    ledger._writer._commit = counted

    with ledger._lock:
        held = await _held_writer(ledger, run_id)
        marks = [asyncio.ensure_future(ledger.amark_sending(run_id, b)) for b in batches]
        await asyncio.sleep(0.05)
    await asyncio.gather(held, *marks)
    with ledger._lock:
        held = await _held_writer(ledger, run_id)
        for batch in batches:
            _queue(ledger, run_id, batch)
    await held
    await ledger.aflush()

    assert len(commits) <= 4  # 20 marks and 20 outcomes (and twice the held mark)
    assert ledger.known_customer_count() == 20 * 3
    assert _query(state, "SELECT count(*) FROM batches WHERE state = 'acknowledged'") == [(20,)]


async def test_an_outcome_that_cannot_be_recorded_fails_alone_and_stops_the_sending(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    good, bad = _batch("b1", _ids("a")), _batch("b2", _ids("b"))
    for batch in (good, bad):
        await ledger.amark_sending(run_id, batch)
    _fail_dead_letter_of(state, "b-1")
    with pytest.raises(KeyError, match="a-0"):  # checked when queued: nothing is queued
        ledger.queue_outcome(run_id, _outcome(good, "failed"), _fingerprints(good), {})

    with ledger._lock:  # both outcomes in one transaction, which fails
        held = await _held_writer(ledger, run_id)
        _queue(ledger, run_id, bad, "failed")
        _queue(ledger, run_id, good)
    await held

    with pytest.raises(LedgerWriteError, match="disk says no"):
        await ledger.aflush()
    # the group was rolled back and its writes tried one by one: only the bad one failed
    assert _query(state, "SELECT batch_id, state FROM batches ORDER BY batch_key") == [
        ("b1", "acknowledged"),
        ("b2", "sending"),
        ("held", "sending"),
    ]
    assert ledger.dead_letter_ids() == set()
    # nothing more goes out once an outcome could not be recorded
    with pytest.raises(LedgerWriteError):
        await ledger.amark_sending(run_id, _batch("b3", _ids("c")))
    with pytest.raises(LedgerWriteError):
        _queue(ledger, run_id, good)
    assert _query(state, "SELECT count(*) FROM batches WHERE batch_id = 'b3'") == [(0,)]
    ledger.finish_run(run_id, "failed", {})  # the run can still be closed


async def test_queued_outcomes_are_committed_before_finish_run_and_close(state: Path) -> None:
    with open_ledger(state) as ledger:
        run_id = ledger.start_run({})
        first, second = _batch("b1", _ids("a")), _batch("b2", _ids("b"))
        for batch in (first, second):
            await ledger.amark_sending(run_id, batch)
        _queue(ledger, run_id, first)
        ledger.finish_run(run_id, "succeeded", {})
        assert _query(state, "SELECT state FROM batches WHERE batch_id = 'b1'") == [
            ("acknowledged",)
        ]
        _queue(ledger, run_id, second)
    assert _query(state, "SELECT count(*) FROM acknowledged") == [(6,)]
    assert not [t for t in threading.enumerate() if t.name.startswith("ledger-writer")]


def test_awkward_ids_round_trip_through_the_acknowledged_json(ledger: SqliteLedger) -> None:
    run_id = ledger.start_run({})
    ids = ('q"uote', "back\\slash", "ctl\x01\n\t", "ünï€😀", "C 1", "[1]", "{}")
    batch = _batch("b1", ids)
    _send(ledger, run_id, batch, "failed")
    _send(ledger, run_id, batch)  # acknowledged now: leaves the dead letters

    assert ledger.acknowledged_fingerprints(ids) == _fingerprints(batch)
    assert ledger.dead_letter_ids() == set()


# --- crashed runs ------------------------------------------------------------------------
def test_a_live_runs_batches_in_flight_are_not_interrupted(
    ledger: SqliteLedger, state: State
) -> None:
    run_id = ledger.start_run({})
    ledger.mark_sending(run_id, _batch("b1", _ids("a")))

    assert ledger.interrupted_batches() == []
    with open_ledger(state) as other:  # another worker looking
        assert other.interrupted_batches() == []


def test_a_run_closed_without_finishing_leaves_interrupted_batches(state: Path) -> None:
    with open_ledger(state) as crashed:
        run_id = crashed.start_run({})
        _send(crashed, run_id, _batch("b1", _ids("a")))
        crashed.mark_sending(run_id, _batch("b2", _ids("b")))

    with open_ledger(state) as rerun:
        (interrupted,) = rerun.interrupted_batches()
        assert (interrupted.run_id, interrupted.batch_id) == (run_id, "b2")
        assert interrupted.customer_ids == _ids("b")
        assert interrupted.state == "sending"

        new_run = rerun.start_run({})
        settled = rerun.settle_interrupted(new_run)

        assert settled == [interrupted]
        assert rerun.interrupted_batches() == []
        assert {r.run_id: r.status for r in rerun.runs()} == {
            run_id: "crashed",
            new_run: "running",
        }
        assert rerun.settle_interrupted(new_run) == []
    batches = _query(state, "SELECT batch_id, state, error FROM batches ORDER BY batch_key")
    assert batches[0][:2] == ("b1", "acknowledged")
    assert batches[1][:2] == ("b2", "interrupted")
    assert f"re-planned by run {new_run}" in str(batches[1][2])


@sqlite_only
def test_a_finished_run_leaves_no_lock_file(ledger: SqliteLedger, state: Path) -> None:
    run_id = ledger.start_run({})
    ledger.finish_run(run_id, "succeeded", {})

    assert list((state / "locks").iterdir()) == []


_fork = multiprocessing.get_context("fork")  # a real process, without a new interpreter


def _child(work: Callable[..., None], *args: object) -> None:
    """Run ``work(*args)`` in a forked child, which must never return into pytest."""
    try:
        work(*args)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _write_batches(state: Path, first: int, count: int, hold: int, talk: Connection) -> None:
    """A run as the delivery does it: each batch marked before sending, recorded after.

    Every seventh batch fails. At batch ``hold`` it says "holding" with that batch in flight
    and waits, as a request to the partner would, until it is killed.
    """
    with open_ledger(state) as ledger:
        run_id = ledger.start_run({"first": first})
        talk.send(run_id)
        for b in range(first, first + count):
            batch = _batch(f"b{b}", _ids(f"c{b}", 50))
            ledger.mark_sending(run_id, batch)
            if b == hold:
                talk.send("holding")
                talk.recv()
            status = "failed" if b % 7 == 0 else "acknowledged"
            ledger.record_outcome(
                run_id, _outcome(batch, status), _fingerprints(batch, "fp"), _documents(batch)
            )
        ledger.finish_run(run_id, "succeeded", {})


def _start_writer(
    state: Path, first: int, count: int, hold: int = -1
) -> tuple[BaseProcess, Connection]:
    ours, theirs = _fork.Pipe()
    process = _fork.Process(target=_child, args=(_write_batches, state, first, count, hold, theirs))
    process.start()
    return process, ours


def _invariants(state: Path, writers: int = 1) -> None:
    """What every committed state of the writers satisfies: no half-recorded batch."""
    if not is_database_url(state):
        assert _query(state, "PRAGMA integrity_check") == [("ok",)]
    ((acked, acked_batches, dead, failed_batches, sending),) = _query(
        state,
        "SELECT (SELECT count(*) FROM acknowledged), "
        "(SELECT coalesce(sum(customers), 0) FROM batches WHERE state = 'acknowledged'), "
        "(SELECT count(*) FROM dead_letters), "
        "(SELECT coalesce(sum(customers), 0) FROM batches WHERE state = 'failed'), "
        "(SELECT count(*) FROM batches WHERE state = 'sending')",
    )
    assert acked == acked_batches
    assert dead == failed_batches
    assert sending <= writers  # each writer sends one batch at a time


@pytest.mark.slow
def test_a_writer_killed_with_a_batch_in_flight_leaves_a_resumable_ledger(state: Path) -> None:
    writer, talk = _start_writer(state, first=1, count=20, hold=12)
    run_id = talk.recv()
    assert talk.recv() == "holding"

    os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
    writer.join()
    assert writer.exitcode == -signal.SIGKILL

    with open_ledger(state) as ledger:
        _invariants(state)
        (interrupted,) = ledger.interrupted_batches()
        assert (interrupted.run_id, interrupted.batch_id) == (run_id, "b12")
        # batches 1..11 were recorded: every seventh failed, the rest are kept
        assert ledger.known_customer_count() == 10 * 50
        assert ledger.dead_letter_ids() == {f"c7-{i}" for i in range(50)}
        # the rerun re-plans the whole extract: only what was never acknowledged goes again
        extract = [(f"c{b}-{i}", f"fp:c{b}-{i}") for b in range(1, 21) for i in range(50)]
        ids = [cid for cid, _ in extract]
        plan = plan_customers(
            extract, ledger.acknowledged_fingerprints(ids), ledger.dead_letter_ids()
        )
        resent = set(plan.to_send["sourceCustomerId"])
        assert plan.unchanged == 10 * 50
        assert set(interrupted.customer_ids) <= resent
        assert resent == {cid for cid in ids if int(cid[1:].split("-")[0]) in {7, *range(12, 21)}}


def _write_then_die_at_statement(state: Path, statement: int) -> None:
    """In a forked child: record two batches, then SIGKILL itself as the third is written.

    The kill comes from SQLite's trace hook, just before the ``statement``-th SQL statement
    of the third batch (its ``mark_sending`` and ``record_outcome``) runs, so every point
    inside those transactions is hit, not just the ones a timer happens to land on.
    """
    with open_ledger(state) as ledger:
        run_id = ledger.start_run({})
        _send(ledger, run_id, _batch("b1", _ids("a", 4)))
        _send(ledger, run_id, _batch("b2", _ids("z", 3)), "failed")
        seen = 0

        def die_at(_: str) -> None:
            nonlocal seen
            seen += 1
            if seen == statement:
                os.kill(os.getpid(), signal.SIGKILL)

        ledger._db.set_trace_callback(die_at)  # the test reaches in for the hook only
        retry = _batch("b3", (*_ids("z", 3), "n-0"), "PUT")  # clears two dead letters
        _send(ledger, run_id, retry, rejected={"z-2": "bad"})


def _committed_state(state: Path) -> str:
    """Which of the three committed states of the third batch the ledger is in."""
    assert _query(state, "PRAGMA integrity_check") == [("ok",)]
    batches = dict(_query(state, "SELECT batch_id, state FROM batches"))
    acked = dict(_query(state, "SELECT source_customer_id, fingerprint FROM acknowledged"))
    dead = dict(_query(state, "SELECT source_customer_id, kind FROM dead_letters"))
    assert batches.items() >= {"b1": "acknowledged", "b2": "failed"}.items()
    if "b3" not in batches:
        assert (set(acked), dead) == (set(_ids("a", 4)), dict.fromkeys(_ids("z", 3), "failed"))
        return "before"
    if batches["b3"] == "sending":
        assert (set(acked), dead) == (set(_ids("a", 4)), dict.fromkeys(_ids("z", 3), "failed"))
        return "sending"
    assert batches["b3"] == "acknowledged"
    assert set(acked) == {*_ids("a", 4), "z-0", "z-1", "n-0"}
    assert dead == {"z-2": "rejected"}
    return "recorded"


@pytest.mark.slow
def test_a_kill_at_any_statement_leaves_a_committed_state(tmp_path: Path) -> None:
    states: list[str] = []
    for statement in range(1, 200):
        state = tmp_path / f"kill-{statement}"
        child = _fork.Process(target=_child, args=(_write_then_die_at_statement, state, statement))
        child.start()
        child.join()
        if child.exitcode == 0:  # past the last statement: the batch was fully recorded
            assert _committed_state(state) == "recorded"
            break
        assert child.exitcode == -signal.SIGKILL
        states.append(_committed_state(state))
        with open_ledger(state) as reopened:  # a crashed ledger opens cleanly
            interrupted = [b.batch_id for b in reopened.interrupted_batches()]
            assert interrupted == (["b3"] if states[-1] == "sending" else [])
    # every statement of both transactions was a kill point; the order of states is the
    # order of the commits
    assert states == sorted(states, key=["before", "sending", "recorded"].index)
    assert {"before", "sending"} <= set(states)
    # the mark's BEGIN, INSERT, COMMIT; the outcome's BEGIN, batch row, acknowledgements,
    # dead-letter check, clearing, dead letter, COMMIT
    assert len(states) >= 10


def _group_then_die_at_statement(state: Path, statement: int) -> None:
    """In a forked child: the third batch's outcome and the fourth's mark are committed in
    one group transaction; SIGKILL just before its ``statement``-th SQL statement."""

    async def work() -> None:
        with open_ledger(state) as ledger:
            run_id = ledger.start_run({})
            _send(ledger, run_id, _batch("b1", _ids("a", 4)))
            _send(ledger, run_id, _batch("b2", _ids("z", 3)), "failed")
            retry = _batch("b3", (*_ids("z", 3), "n-0"), "PUT")  # clears two dead letters
            await ledger.amark_sending(run_id, retry)
            seen = 0

            def die_at(_: str) -> None:
                nonlocal seen
                seen += 1
                if seen == statement:
                    os.kill(os.getpid(), signal.SIGKILL)

            ledger._db.set_trace_callback(die_at)  # runs on the writer thread
            with ledger._lock:
                held = await _held_writer(ledger, run_id)
                ledger.queue_outcome(
                    run_id,
                    _outcome(retry, rejected={"z-2": "bad"}),
                    _fingerprints(retry),
                    _documents(retry),
                )
                following = asyncio.ensure_future(
                    ledger.amark_sending(run_id, _batch("b4", _ids("m", 2)))
                )
                await asyncio.sleep(0.05)
            await asyncio.gather(held, following)

    asyncio.run(work())


@pytest.mark.slow
def test_a_kill_at_any_statement_of_a_group_commit_leaves_a_committed_state(
    tmp_path: Path,
) -> None:
    states: list[str] = []
    for statement in range(1, 200):
        state = tmp_path / f"kill-{statement}"
        child = _fork.Process(target=_child, args=(_group_then_die_at_statement, state, statement))
        child.start()
        child.join()
        if child.exitcode == 0:
            assert _committed_state(state) == "recorded"
            break
        assert child.exitcode == -signal.SIGKILL
        states.append(_committed_state(state))
        batches = dict(_query(state, "SELECT batch_id, state FROM batches"))
        # the outcome of b3 and the mark of b4 are one transaction: both or neither
        assert ("b4" in batches) == (states[-1] == "recorded")
        with open_ledger(state) as reopened:
            interrupted = {b.batch_id for b in reopened.interrupted_batches()}
        assert interrupted == {b for b, s in batches.items() if s == "sending"}
        assert ("b3" in interrupted) == (states[-1] == "sending")
    # killed at every statement up to the group's COMMIT (the held mark's transaction, then
    # BEGIN, the outcome's five statements, the mark, COMMIT): it was all or nothing
    assert states == ["sending"] * len(states)
    assert len(states) >= 8


DELIVERY_CONCURRENCY = 4


def _deliver_concurrently(state: Path, sent_log: Path) -> None:
    """In a forked child: deliver 400 batches as customer_sync.flows.deliver does (a slot each: mark
    awaited, request, outcome queued before the slot is given back), logging each batch
    once its request is out; every ninth batch fails."""

    async def work() -> None:
        log = os.open(sent_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        limiter = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        with open_ledger(state) as ledger:
            run_id = ledger.start_run({})

            async def one(b: int) -> None:
                batch = _batch(f"b{b}", _ids(f"c{b}", 50))
                async with limiter:
                    await ledger.amark_sending(run_id, batch)
                    os.write(log, f"{batch.batch_id}\n".encode())  # the request is out
                    await asyncio.sleep(0.001 * (b % 3))
                    _queue(ledger, run_id, batch, "failed" if b % 9 == 0 else "acknowledged")

            for group in range(0, 400, 100):
                await asyncio.gather(*(one(b) for b in range(group, group + 100)))
                await ledger.aflush()
            ledger.finish_run(run_id, "succeeded", {})

    asyncio.run(work())


@pytest.mark.slow
@pytest.mark.parametrize("sent_before_kill", [1, 37, 150, 333, 399])
def test_a_delivery_killed_at_any_moment_leaves_at_most_its_concurrency_in_flight(
    state: State, tmp_path: Path, sent_before_kill: int
) -> None:
    sent_log = tmp_path / "sent"
    child = _fork.Process(target=_child, args=(_deliver_concurrently, state, sent_log))
    child.start()
    deadline = time.monotonic() + 60
    while not sent_log.exists() or len(sent_log.read_bytes().split()) < sent_before_kill:
        assert child.is_alive() and time.monotonic() < deadline
        time.sleep(0.0005)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    assert child.exitcode == -signal.SIGKILL

    sent = set(sent_log.read_text().split())
    _invariants(state, writers=DELIVERY_CONCURRENCY)  # at most `concurrency` batches sending
    batches = dict(_query(state, "SELECT batch_id, state FROM batches"))
    recorded = {b for b, s in batches.items() if s != "sending"}
    # every request that went out was marked first; what is not recorded is in flight
    assert sent <= batches.keys()
    assert recorded <= sent
    with open_ledger(state) as ledger:
        interrupted = {b.batch_id for b in ledger.interrupted_batches()}
        assert interrupted == batches.keys() - recorded
        assert len(interrupted) <= DELIVERY_CONCURRENCY
        acked = _query(state, "SELECT count(*) FROM acknowledged")[0][0]
        assert acked == 50 * len({b for b in recorded if batches[b] == "acknowledged"})


@pytest.mark.slow
def test_two_writer_processes_share_one_ledger(state: Path) -> None:
    open_ledger(state).close()
    writers = [_start_writer(state, first=n * 1000, count=150) for n in range(2)]

    for writer, _ in writers:
        writer.join()
        assert writer.exitcode == 0

    _invariants(state)
    with open_ledger(state) as ledger:
        assert [r.status for r in ledger.runs()] == ["succeeded", "succeeded"]
        assert ledger.interrupted_batches() == []


# --- readers while writing (a notebook during a run) -------------------------------------
_READER = textwrap.dedent(
    """
    import sqlite3, sys
    from pathlib import Path
    uri = Path(sys.argv[1]).as_uri() + "?mode=ro"
    stop = Path(sys.argv[2])
    db = sqlite3.connect(uri, uri=True)
    reads = bad = 0
    seen = set()
    print("ready", flush=True)
    while True:
        stopping = stop.exists()
        # one statement is one snapshot: both counts from the same committed state
        acked, expected = db.execute(
            "SELECT (SELECT count(*) FROM acknowledged), (SELECT coalesce(sum(customers), 0) "
            "FROM batches WHERE state = 'acknowledged')"
        ).fetchone()
        reads += 1
        bad += acked != expected
        seen.add(acked)
        if stopping:
            break
    print("reads", reads, "bad", bad, "distinct", len(seen), flush=True)
    """
)


def _read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    raise AssertionError(f"reader ended (status {process.wait()}) before printing {prefix!r}")


@sqlite_only
@pytest.mark.slow
def test_a_reader_in_another_process_sees_consistent_data_while_a_run_writes(
    state: Path, tmp_path: Path
) -> None:
    stop = tmp_path / "stop"
    with open_ledger(state) as ledger:
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, str(state / LEDGER_FILE), str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        _read_until(reader, "ready")
        run_id = ledger.start_run({})
        for b in range(1_500):
            _send(ledger, run_id, _batch(f"b{b}", _ids(f"c{b}", 50)))
        stop.touch()
        words = _read_until(reader, "reads").split()
        assert reader.wait() == 0

    reads, bad = int(words[1]), int(words[3])
    assert reads >= 1
    assert bad == 0


@sqlite_only
def test_a_reader_is_not_blocked_by_an_open_write_transaction(
    ledger: SqliteLedger, state: Path
) -> None:
    run_id = ledger.start_run({})
    _send(ledger, run_id, _batch("b1", _ids("a")))
    writer = sqlite3.connect(state / LEDGER_FILE, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM acknowledged")

    # the notebook reads the last committed state, without waiting for the writer
    assert _query(state, "SELECT count(*) FROM acknowledged") == [(3,)]
    assert ledger.known_customer_count() == 3

    writer.execute("ROLLBACK")
    writer.close()
