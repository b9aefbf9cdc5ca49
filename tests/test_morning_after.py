"""The look-back commands over a real SQLite ledger: `runs`, `runs RUN_ID`, `history`.

The ledger-level tests run on PostgreSQL too (the ``where`` fixture).

Two nights against the stand-in partner: the second one with a changed card, a closed
account, a vanished customer and a partner refusal (``reject_ids``). Planted postal code,
last4 and iin values never appear in any command's output.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from customer_sync.cli.app import main
from customer_sync.cli.output import csv_cell
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.ledger import _sqlite_sql as sql
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.queries import history, runs
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.records import BatchOutcome
from customer_sync.transforms.refusals import rejected_by_reason
from tests.flow_support import read_table, write_synthetic, write_table
from tests.test_absent import remove_customers
from tests.test_cli import _cli_subprocess, _run

pytestmark = pytest.mark.usefixtures("prefect_harness")

PLANTED_POSTAL = "97531"
PLANTED_LAST4 = "8642"
PLANTED_IIN = "42424242"
# tokens that are ours and may hold any digits: fingerprints, run ids, times, request ids
_OURS = re.compile(r"[0-9a-f]{12,}|\d{8}T\d{6}Z|\d{4}-\d\d-\d\dT[\d:.]+Z|[0-9a-f-]{36}")


def _assert_no_card_data(text: str) -> None:
    scrubbed = _OURS.sub("", text)
    for planted in (PLANTED_POSTAL, PLANTED_LAST4, PLANTED_IIN):
        assert planted not in scrubbed


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Night 1 sends 30 customers; night 2 changes a card, closes an account, loses a
    customer and has one refused by the partner."""
    tmp = tmp_path_factory.mktemp("nights")
    source = write_synthetic(tmp / "in", 30)
    state = tmp / "state"
    customers = read_table(source, "customers")
    cards = read_table(source, "cards")
    accounts = read_table(source, "accounts")
    customers.loc[customers.index[0], "postalCode"] = PLANTED_POSTAL
    write_table(source, "customers", customers)
    card_owner = str(cards.loc[cards.index[0], "sourceCustomerId"])
    cards.loc[cards.index[0], "last4"] = PLANTED_LAST4
    visa = cards.index[cards["networkIdentifier"] == "4"][0]
    cards.loc[visa, "iin"] = PLANTED_IIN
    write_table(source, "cards", cards)
    open_accounts = accounts[(accounts["status"] == "OPEN")]
    closed_row = open_accounts.index[-1]
    closed_owner = str(accounts.loc[closed_row, "primarySourceCustomerId"])
    ids = list(customers["sourceCustomerId"])
    vanished = next(i for i in reversed(ids) if i not in (card_owner, closed_owner))
    refused = next(i for i in ids[1:] if i not in (card_owner, closed_owner, vanished))
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        first = main(_run(source, stub.url, state, "--max-held-back", "0.5"))
        # night 2
        cards = read_table(source, "cards")
        cards.loc[cards.index[0], "last4"] = "1357"
        write_table(source, "cards", cards)
        accounts = read_table(source, "accounts")
        accounts.loc[closed_row, "status"] = "CLOSED"
        accounts.loc[closed_row, "accountCloseDate"] = "2026-11-30"
        write_table(source, "accounts", accounts)
        remove_customers(source, {vanished})
        second = main(_run(source, stub.url, state))
    return {
        "state": state,
        "statuses": (first, second),
        "card_owner": card_owner,
        "closed_owner": closed_owner,
        "vanished": vanished,
        "refused": refused,
    }


def test_runs_lists_both_nights_newest_first(
    two_nights: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    state = two_nights["state"]
    assert two_nights["statuses"] == (1, 1)  # the refused customer fails both nights
    capsys.readouterr()
    assert main(["runs", "--state", str(state), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2
    newest, oldest = listed
    assert newest["started_at"] > oldest["started_at"]
    assert oldest["counts"]["customers_sent"] == 29 and oldest["counts"]["customers_rejected"] == 1
    assert newest["counts"]["customers_absent"] == 1
    assert newest["exit_status"] == 1 and newest["status"] == "incomplete"
    assert newest["flow_run_id"]  # recorded from the Prefect flow run
    assert main(["runs", "--state", str(state)]) == 0
    table = capsys.readouterr().out
    assert newest["run_id"] in table and "incomplete" in table
    _assert_no_card_data(table)


def test_one_run_shows_its_report_and_batches_by_outcome(
    two_nights: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(two_nights["state"])
    with SqliteLedger.open(Path(state), read_only=True) as ledger:
        newest = runs(ledger)[0]
    capsys.readouterr()
    assert main(["runs", newest.run_id, "--state", state, "--format", "json"]) == 0
    (detail,) = json.loads(capsys.readouterr().out)
    report = detail["report"]
    assert report["customers_absent"] == 1
    assert report["rejected_by_reason"] == {
        "sourceCustomerId: customer refused by the stand-in server (configured reject id)": 1
    }
    assert detail["batches_by_state"]["rejected"] == 1
    assert [b["state"] for b in detail["failed_batches"]] == ["rejected"]
    for fmt in ("table", "csv"):
        assert main(["runs", newest.run_id, "--state", state, "--format", fmt]) == 0
        _assert_no_card_data(capsys.readouterr().out)
    assert main(["runs", "no-such-run", "--state", state]) == 2
    assert capsys.readouterr().err.startswith("customer-sync: ")


def test_history_of_a_changed_customer_shows_its_post_then_its_put(
    two_nights: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(two_nights["state"])
    for who in ("card_owner", "closed_owner"):
        capsys.readouterr()
        assert main(["history", str(two_nights[who]), "--state", state, "--format", "json"]) == 0
        sends = json.loads(capsys.readouterr().out)
        assert [(s["method"], s["outcome"]) for s in sends] == [
            ("POST", "acknowledged"),
            ("PUT", "acknowledged"),
        ]
        assert sends[0]["fingerprint"] != sends[1]["fingerprint"]
        assert all(s["request_id"] for s in sends)
    for fmt in ("table", "csv"):
        assert (
            main(["history", str(two_nights["card_owner"]), "--state", state, "--format", fmt]) == 0
        )
        _assert_no_card_data(capsys.readouterr().out)


def test_history_of_a_refused_customer_keeps_the_answer_and_request_id(
    two_nights: dict[str, object],
) -> None:
    with SqliteLedger.open(Path(str(two_nights["state"])), read_only=True) as ledger:
        sends = history(ledger, str(two_nights["refused"]))
        vanished = history(ledger, str(two_nights["vanished"]))
    assert [s.outcome for s in sends] == ["not acknowledged", "rejected"]
    assert "configured reject id" in (sends[-1].answer or "")
    assert sends[-1].request_id
    assert [s.outcome for s in vanished] == ["acknowledged"]  # sent once, then gone


def test_the_real_command_answers_in_its_own_process(two_nights: dict[str, object]) -> None:
    done = _cli_subprocess(["history", str(two_nights["card_owner"]), "--state",
                            str(two_nights["state"]), "--format", "csv"])  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("sent_at,method,outcome,request_id,fingerprint")
    assert len(lines) == 3
    _assert_no_card_data(done.stdout)


# --- the ledger's parts ----------------------------------------------------------------------
def _outcome(batch_id: str, ids: tuple[str, ...], status: str = "acknowledged") -> BatchOutcome:
    return BatchOutcome(batch_id=batch_id, method="POST", customer_ids=ids, status=status,  # type: ignore[arg-type]
                        attempts=1, http_status=200, request_id=f"req-{batch_id}")  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """The ledger the ledger-level tests use: a SQLite state folder, or a fresh PostgreSQL
    database (``open_ledger`` picks the backend)."""
    if request.param == "sqlite":
        yield tmp_path
        return
    server = request.getfixturevalue("postgres_server")
    url = server.database()
    yield url
    server.drop(url)


def test_acknowledgements_are_appended_and_pruned_keeping_the_last(where: Path | str) -> None:
    with open_ledger(where) as ledger:
        run = ledger.start_run({})
        for n, fingerprint in enumerate(("f1", "f2", "f3")):
            ledger.record_outcome(
                run, _outcome(f"b{n}", ("C1", "C2")), {"C1": fingerprint, "C2": "x"}, {}
            )
        assert [s.acknowledged_fingerprint for s in ledger.customer_sends("C1")] == [
            "f1",
            "f2",
            "f3",
        ]
        assert ledger.prune_acknowledgements("1999-01-01T00:00:00.000000Z") == 0
        assert ledger.prune_acknowledgements("9999-01-01T00:00:00.000000Z") == 4
        sends = ledger.customer_sends("C1")
        assert [s.acknowledged_fingerprint for s in sends] == [None, None, "f3"]
        assert ledger.acknowledged_ids() == ["C1", "C2"]
        assert ledger.customer_sends("C") == []  # a prefix of an id is not the id


def test_a_version_1_ledger_is_migrated_with_its_last_acknowledgements(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    for statement in sql._statements(sql.MIGRATIONS[0]):
        db.execute(statement)
    db.execute("INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, state, "
               "attempts, request_id, sent_at) VALUES ('r', 'b', 'POST', '[\"C9\"]', 1, "
               "'acknowledged', 1, 'req-1', 't')")  # fmt: skip
    db.execute("INSERT INTO acknowledged VALUES ('C9', 'fp', 1)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with SqliteLedger.open(tmp_path) as ledger:
        (send,) = ledger.customer_sends("C9")
    assert (send.acknowledged_fingerprint, send.request_id) == ("fp", "req-1")


def test_the_morning_queries_read_a_run_its_batches_and_a_dead_letter(where: Path | str) -> None:
    with open_ledger(where) as ledger:
        run = ledger.start_run({"api_url": "https://user:pw@partner.example/v2"})
        ledger.record_outcome(run, _outcome("b0", ("C1", "C2")), {"C1": "f1", "C2": "f2"}, {})
        ledger.record_outcome(
            run, _outcome("b1", ("C3",), "failed"), {"C3": "f3"}, {"C3": b'{"id":"C3"}'}
        )
        ledger.finish_run(run, "incomplete", {"customers_failed": 1}, reason="1 failed")
        record = ledger.run(run)
        assert record is not None
        assert (record.status, record.reason) == ("incomplete", "1 failed")
        assert "pw" not in str(record.parameters)  # a URL's user-info never stored
        assert ledger.run("no-such-run") is None
        assert [b.batch_id for b in ledger.batches_of_run(run)] == ["b0", "b1"]
        note = ledger.dead_letter_note("C3")
        assert note is not None and (note.kind, note.request_id) == ("failed", "req-b1")
        assert ledger.dead_letter_note("C1") is None
        (send,) = ledger.customer_sends("C3")
        assert (send.batch_state, send.acknowledged_fingerprint) == ("failed", None)
        assert sorted(ledger.acknowledged_ids()) == ["C1", "C2"]
        assert [(r.run_id, r.status) for r in runs(ledger)] == [(run, "incomplete")]


def test_a_version_1_postgresql_ledger_is_migrated_with_its_last_acknowledgements(
    postgres_server: Any,
) -> None:
    import psycopg

    from customer_sync.ledger import _postgres_sql as pg_sql

    url = postgres_server.database()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(pg_sql.CREATE_SCHEMA_TABLE)
        db.execute(pg_sql.MIGRATIONS[0])
        db.execute("INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, "
                   "state, attempts, request_id, sent_at) VALUES ('r', 'b', 'POST', "
                   "'[\"C9\"]', 1, 'acknowledged', 1, 'req-1', now())")  # fmt: skip
        db.execute("INSERT INTO acknowledged VALUES ('C9', 'fp', 1)")
        db.execute("UPDATE ledger_schema SET version = 1")
    with open_ledger(url) as ledger:
        (send,) = ledger.customer_sends("C9")
        assert ledger.run("r") is None
    assert (send.acknowledged_fingerprint, send.request_id) == ("fp", "req-1")
    postgres_server.drop(url)


def test_a_batch_that_gives_up_keeps_its_last_request_id_in_the_dead_letters(
    tmp_path: Path,
) -> None:
    from tests.flow_support import run_sync

    source = write_synthetic(tmp_path / "in", 3)
    with serve_stub_in_thread(StubFaults(fail_each_batch=100, fail_with=503)) as stub:
        result = run_sync(source, stub.url, tmp_path / "state")
    assert result.customers_failed == 3
    with SqliteLedger.open(tmp_path / "state", read_only=True) as ledger:
        letters = ledger.dead_letters()
    assert letters and all(letter.request_id for letter in letters)
    assert {letter.request_id for letter in letters} == {result.batches[0].request_id}


def test_refusals_group_by_field_and_message_with_values_masked() -> None:
    answers = [
        "HTTP 400 Bad Request: postalCode: '97531' is not valid; last4: bad 8642",
        "HTTP 400 Bad Request: postalCode: '12345' is not valid",
        "HTTP 400 rejected",
    ]
    grouped = rejected_by_reason(answers)
    assert grouped == {"postalCode: '…' is not valid": 2, "HTTP 400 rejected": 1,
                       "last4: bad #": 1}  # fmt: skip
    assert not any(PLANTED_POSTAL in r or PLANTED_LAST4 in r for r in grouped)


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_look_like_formulas_are_neutralised(cell: str) -> None:
    assert csv_cell(cell) == "'" + cell
    assert csv_cell("C001") == "C001"
