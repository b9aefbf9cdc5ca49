"""The enrollment-ended action (``--end-enrollment-of-absent``): against the stand-in partner
over real HTTP, with a real ledger (SQLite and PostgreSQL).

With the option, a customer that vanished from the extract gets its last acknowledged tree
sent again (PUT) with enrollment ended, once; without it nothing of a document is kept in
the ledger (and a run without it empties what an earlier one kept).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import customer_sync
from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.ledger.factory import open_ledger
from customer_sync.transforms.enrollment import ENDED_PREFIX, ended_document, ended_fingerprint
from tests.flow_support import read_table, write_synthetic
from tests.test_absent import remove_customers
from tests.test_cli import _run

DOCUMENT = {
    "sourceCustomerId": "C1",
    "postalCode": "02134",
    "enrollmentStartDate": "2020-01-01T00:00:00Z",
    "enrollmentEndDate": None,
    "enrollmentOptInStatus": "ACTIVE",
    "accounts": [{"sourceAccountId": "A1", "cards": [{"last4": "1234", "networkIdentifier": 4}]}],
}


def test_an_ended_document_is_the_same_tree_inactive_with_an_end_date() -> None:
    ended = ended_document(orjson.dumps(DOCUMENT), "2026-12-03T01:00:00Z")
    assert ended is not None
    assert orjson.loads(ended) == {
        **DOCUMENT,
        "enrollmentOptInStatus": "INACTIVE",
        "enrollmentEndDate": "2026-12-03T01:00:00Z",
    }
    assert list(orjson.loads(ended)) == list(DOCUMENT)  # the partner's field order kept
    assert ended_document(ended, "2026-12-04T01:00:00Z") is None  # ended already
    assert ended_fingerprint(ended).startswith(ENDED_PREFIX)
    earlier = {**DOCUMENT, "enrollmentEndDate": "2025-01-01T00:00:00Z"}
    kept = ended_document(orjson.dumps(earlier), "2026-12-03T01:00:00Z")
    assert kept is not None and orjson.loads(kept)["enrollmentEndDate"] == "2025-01-01T00:00:00Z"
    future = {**DOCUMENT, "enrollmentStartDate": "2027-01-01T00:00:00Z"}
    late = ended_document(orjson.dumps(future), "2026-12-03T01:00:00Z")
    assert late is not None and orjson.loads(late)["enrollmentEndDate"] == "2027-01-01T00:00:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "state")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.database()
    work = os.environ.get("CUSTOMER_SYNC_WORK_DIR")
    os.environ["CUSTOMER_SYNC_WORK_DIR"] = str(tmp_path / "work")
    yield url
    if work is None:
        os.environ.pop("CUSTOMER_SYNC_WORK_DIR", None)
    else:
        os.environ["CUSTOMER_SYNC_WORK_DIR"] = work
    server.drop(url)


def _kept(state: str) -> int:
    with open_ledger(state, read_only=True) as ledger:
        ids = ledger.acknowledged_ids()
        return len(ledger.kept_documents(ledger.acknowledged_fingerprints(ids)))


def _report(state: str, tmp: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp / f"{name}.json").read_text())
    return data


@pytest.mark.usefixtures("prefect_harness")
def test_a_vanished_customer_is_sent_inactive_once(where: str, tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 20)
    vanished = str(read_table(source, "customers")["sourceCustomerId"].iloc[-1])
    end = ("--end-enrollment-of-absent",)
    with serve_stub_in_thread() as stub:
        assert (
            main([*_run(source, stub.url, where, *end), "--report", str(tmp_path / "1.json")]) == 0
        )
        sent_first = stub.accepted[vanished].document
        assert _kept(where) == 20  # the option keeps the acknowledged documents
        remove_customers(source, {vanished})
        assert (
            main([*_run(source, stub.url, where, *end), "--report", str(tmp_path / "2.json")]) == 0
        )
        second = _report(where, tmp_path, "2")
        received = stub.accepted[vanished]
        assert received.method == "PUT" and received.times == 2
        assert received.document is not None and sent_first is not None
        assert received.document["enrollmentOptInStatus"] == "INACTIVE"
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", received.document["enrollmentEndDate"]
        )
        assert received.document["enrollmentEndDate"] >= received.document["enrollmentStartDate"]
        assert {k: v for k, v in received.document.items() if not k.startswith("enrollment")} == {
            k: v for k, v in sent_first.items() if not k.startswith("enrollment")
        }  # the same tree, accounts and cards included
        assert second["customers_enrollment_ended"] == 1
        assert second["customers_absent"] == 1 and second["reconciles"]
        assert second["status"] == "completed" and second["exit_status"] == 0
        assert any(
            "-ended-" in b["batch_id"] and b["customers"] == [vanished] for b in second["batches"]
        )
        with open_ledger(where, read_only=True) as ledger:
            fingerprint = ledger.acknowledged_fingerprints([vanished])[vanished]
        assert fingerprint.startswith(ENDED_PREFIX)
        # the next night: still absent, already ended, nothing sent again
        assert (
            main([*_run(source, stub.url, where, *end), "--report", str(tmp_path / "3.json")]) == 0
        )
        third = _report(where, tmp_path, "3")
        assert stub.accepted[vanished].times == 2
        assert third["customers_enrollment_ended"] == 0 and third["enrollment_already_ended"] == 1
        # ended, it is no longer absent: not in the count, nor in the absent guard's share
        assert (third["customers_absent"], third["customers_known"]) == (0, 19)
        assert vanished not in {
            r.sourceCustomerId for r in customer_sync.plan(source, state=where).rows
        }
        # a run without the option forgets every kept document (card data)
        assert main([*_run(source, stub.url, where), "--report", str(tmp_path / "4.json")]) == 0
        assert _kept(where) == 0


@pytest.mark.usefixtures("prefect_harness")
def test_without_the_option_no_document_is_kept_and_nobody_is_ended(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    state = str(tmp_path / "state")
    vanished = str(read_table(source, "customers")["sourceCustomerId"].iloc[-1])
    with serve_stub_in_thread() as stub:
        assert main(_run(source, stub.url, state)) == 0
        remove_customers(source, {vanished})
        assert main([*_run(source, stub.url, state), "--report", str(tmp_path / "r.json")]) == 0
        assert stub.accepted[vanished].times == 1  # stays at the partner, reported absent
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["customers_absent"] == 1 and report["customers_enrollment_ended"] == 0
    db = sqlite3.connect(f"file:{tmp_path / 'state' / 'ledger.sqlite3'}?mode=ro", uri=True)
    assert db.execute("SELECT count(*) FROM kept_documents").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM document_parts").fetchone()[0] == 10
    db.close()


@pytest.mark.usefixtures("prefect_harness")
def test_the_option_is_refused_with_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 5)
    args = _run(
        source, "http://127.0.0.1:9", tmp_path / "state", "--end-enrollment-of-absent", "--stream"
    )
    assert main(args) == 2
    assert "cannot be used with --stream" in capsys.readouterr().err
