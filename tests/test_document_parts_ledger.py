"""The ledger's document parts (schema 4 on SQLite, 5 on PostgreSQL): kept per fingerprint,
pruned to the acknowledged and the latest one, and added to a ledger of the previous version
without touching what it held."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from customer_sync.ledger import _sqlite_sql as sql
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.records import BatchOutcome


def _acknowledged(batch_id: str, ids: tuple[str, ...]) -> BatchOutcome:
    return BatchOutcome(batch_id=batch_id, method="POST", customer_ids=ids, status="acknowledged",
                        attempts=1, http_status=200, request_id=f"req-{batch_id}")  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    if request.param == "sqlite":
        yield tmp_path
        return
    server = request.getfixturevalue("postgres_server")
    url = server.database()
    yield url
    server.drop(url)


def test_parts_are_kept_for_the_acknowledged_and_the_latest_fingerprint(where: Path | str) -> None:
    with open_ledger(where) as ledger:
        ledger.record_document_parts([("C1", "f1", b'{"v":1,"n":1}'), ("C2", "g1", b"{}")])
        run = ledger.start_run({})
        ledger.record_outcome(run, _acknowledged("b0", ("C1",)), {"C1": "f1"}, {})
        ledger.record_document_parts([("C1", "f2", b'{"v":1,"n":2}')])
        ledger.record_document_parts([("C1", "f3", b'{"v":1,"n":3}')])  # f2 never acknowledged
        assert ledger.document_parts({"C1": "f1"}) == {"C1": b'{"v":1,"n":1}'}
        assert ledger.document_parts({"C1": "f2"}) == {}  # pruned
        assert ledger.document_parts({"C1": "f3", "C2": "g1", "C9": "x"}) == {
            "C1": b'{"v":1,"n":3}',
            "C2": b"{}",
        }
        assert ledger.customers_with_parts({"C1": "f3", "C2": "other", "C9": "x"}) == {"C1"}
        ledger.record_document_parts([("C1", "f3", b"ignored")])  # the same key: kept as is
        assert ledger.document_parts({"C1": "f3"}) == {"C1": b'{"v":1,"n":3}'}
        ledger.finish_run(run, "completed", {})


def test_a_version_3_sqlite_ledger_gets_the_parts_table(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    for step in sql.MIGRATIONS[:3]:
        for statement in sql._statements(step):
            db.execute(statement)
    db.execute("INSERT INTO acknowledged VALUES ('C9', 'fp', 1)")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with SqliteLedger.open(tmp_path) as ledger:
        assert ledger.acknowledged_fingerprints(["C9"]) == {"C9": "fp"}
        assert ledger.document_parts({"C9": "fp"}) == {}  # sent before parts were kept
        ledger.record_document_parts([("C9", "fp", b"{}")])
        assert ledger.document_parts({"C9": "fp"}) == {"C9": b"{}"}
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == sql.SCHEMA_VERSION == 4
    db.close()


def test_a_version_4_postgresql_ledger_gets_the_parts_table(postgres_server: Any) -> None:
    import psycopg

    from customer_sync.ledger import _postgres_sql as pg_sql

    url = postgres_server.database()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(pg_sql.CREATE_SCHEMA_TABLE)
        for step in pg_sql.MIGRATIONS[:4]:
            db.execute(step)
        db.execute("INSERT INTO acknowledged VALUES ('C9', 'fp', 1)")
        db.execute("UPDATE ledger_schema SET version = 4")
    with open_ledger(url) as ledger:
        assert ledger.acknowledged_fingerprints(["C9"]) == {"C9": "fp"}
        assert ledger.document_parts({"C9": "fp"}) == {}
        ledger.record_document_parts([("C9", "fp", b"{}")])
        assert ledger.document_parts({"C9": "fp"}) == {"C9": b"{}"}
    with psycopg.connect(url) as db:
        assert db.execute("SELECT version FROM ledger_schema").fetchone() == (5,)
    postgres_server.drop(url)


def test_parts_recorded_in_slices_are_the_parts_recorded_at_once(
    where: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """record_missing_parts writes a slice at a time (bounded memory); the rows it leaves
    are the same as one write of everything, and customers that have parts are skipped."""
    import pyarrow as pa

    from customer_sync.ledger import parts
    from customer_sync.transforms.changes import parts_json

    ids = [f"C{n}" for n in range(11)]
    fingerprints = pa.array([f"f{n}" for n in range(11)])
    documents = pa.array(
        [b'{"sourceCustomerId":"%s","accounts":[]}' % cid.encode() for cid in ids], pa.binary()
    )
    monkeypatch.setattr(parts, "PARTS_SLICE", 3)
    with open_ledger(where) as ledger:
        ledger.record_document_parts([("C4", "f4", b'{"v":1,"seen":true}')])
        assert parts.record_missing_parts(ledger, ids, fingerprints, documents) == 10
        stored = ledger.document_parts(dict(zip(ids, fingerprints.to_pylist(), strict=True)))
    expected = {cid: parts_json(doc) for cid, doc in zip(ids, documents.to_pylist(), strict=True)}
    expected["C4"] = b'{"v":1,"seen":true}'  # had parts: left as it was
    assert {cid: bytes(value) for cid, value in stored.items()} == expected
