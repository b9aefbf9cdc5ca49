"""``customer-sync run``, ``replay``, ``dead-letters`` and ``demo`` as a user runs them.

Most tests call ``customer_sync.cli.app.main([...])`` in this process (fast); a few start the real
command as a subprocess (``customer-sync``), pointed at this session's Prefect test
server so that it does not start an ephemeral one. The partner is the stand-in server over
real HTTP on 127.0.0.1, the ledger a real SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.ledger.sqlite import SqliteLedger
from tests.conftest import REPO
from tests.flow_support import read_table, write_synthetic, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPORT_COUNTS = (
    "customers_read",
    "customers_held_back",
    "customers_sent",
    "customers_failed",
    "customers_created",
    "customers_updated",
    "customers_unchanged",
)
WAIT = 180.0


def _run(source: Path, url: str, state: Path, *options: str) -> list[str]:
    return ["run", str(source), "--api-url", url, "--state", str(state), "--no-progress", *options]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hold_back_one_customer(source: Path) -> str:
    """Give the first customer an unknown enrolment status; its id."""
    customers = read_table(source, "customers")
    customers.loc[0, "enrollmentOptInStatus"] = "NOT-A-STATUS"
    write_table(source, "customers", customers)
    return str(customers.loc[0, "sourceCustomerId"])


def _ids(source: Path) -> list[str]:
    return list(read_table(source, "customers")["sourceCustomerId"])


def _cli_subprocess(arguments: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """The real command in its own process group, which is killed whatever happens."""
    import prefect.settings

    env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "customer_sync.cli.app", *arguments],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# --- run: exit statuses and the report ------------------------------------------------------
def test_run_delivers_everything_exits_0_and_reports_every_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 120)
    report = tmp_path / "out" / "report.json"
    with serve_stub_in_thread() as stub:
        status = main(_run(source, stub.url, tmp_path / "state", "--report", str(report)))
        request_ids = {r.request_id for r in stub.requests}
        accepted = set(stub.accepted)

    assert status == 0
    data = json.loads(report.read_text())
    assert {key: data[key] for key in REPORT_COUNTS} == {
        "customers_read": 120,
        "customers_held_back": 0,
        "customers_sent": 120,
        "customers_failed": 0,
        "customers_created": 120,
        "customers_updated": 0,
        "customers_unchanged": 0,
    }
    assert len(data["batches"]) == 3
    for batch in data["batches"]:
        assert {"requestId", "status", "attempts", "customers"} <= set(batch)
        assert batch["status"] == "acknowledged" and batch["attempts"] == 1
        assert 1 <= len(batch["customers"]) <= 50
    assert {b["requestId"] for b in data["batches"]} == request_ids  # what the partner answered
    assert sorted(c for b in data["batches"] for c in b["customers"]) == sorted(_ids(source))
    assert accepted == set(_ids(source))
    out = capsys.readouterr().out
    assert "delivered: 120 sent (120 created, 0 updated), 0 unchanged, 0 failed" in out
    assert "counts reconcile" in out


def test_a_held_back_customer_exits_1_and_the_others_are_delivered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    held = _hold_back_one_customer(source)
    report = tmp_path / "report.json"
    with serve_stub_in_thread() as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--report", str(report))
        status = main([*arguments, "--max-held-back", "0.5"])
        accepted = set(stub.accepted)

    assert status == 1
    data = json.loads(report.read_text())
    assert (data["customers_held_back"], data["customers_sent"]) == (1, 9)
    assert accepted == set(_ids(source)) - {held}
    rejects = pd.read_csv(data["rejects"], dtype=str)
    assert set(rejects["held_back_customers"]) == {held}
    assert "held back" in capsys.readouterr().out


def test_the_held_back_guard_exits_2_with_one_line_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 10)
    _hold_back_one_customer(source)  # 10% held back, above the default 5%
    with serve_stub_in_thread() as stub:
        status = main(_run(source, stub.url, tmp_path / "state"))
        requests = stub.counters.requests

    assert status == 2
    assert requests == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "customer-sync:" in line]
    assert len(lines) == 1
    assert lines[0].startswith("customer-sync: 1 of 10 customers (10.0%) would be held back")
    assert "nothing was sent" in lines[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{folder}"], "customer-sync: {folder}: no cards.csv or cards.parquet in this folder"),
        (["--customers", "{folder}/customers.csv"], "customer-sync: give a SOURCE folder, or all"),
        (["{folder}", "--rename", "{{oops"], "customer-sync: --rename: not valid JSON"),
    ],
    ids=["missing-file", "no-source", "bad-rename"],
)
def test_unusable_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    folder = write_synthetic(tmp_path / "in", 3)
    (folder / "cards.csv").unlink()
    given = [a.format(folder=folder) for a in arguments]
    argv = ["run", *given, "--api-url", "http://127.0.0.1:9", "--state", str(tmp_path / "s")]
    assert main([*argv, "--no-progress"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "customer-sync:" in line]
    assert len(lines) == 1
    assert lines[0].startswith(message.format(folder=folder))


def test_dry_run_writes_the_request_bodies_and_sends_nothing(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 75)
    out, state = tmp_path / "dry", tmp_path / "state"
    with serve_stub_in_thread() as stub:
        status = main(_run(source, stub.url, state, "--dry-run", str(out)))
        requests = stub.counters.requests

    assert status == 0
    assert requests == 0
    # the bodies (000001-POST.json ...): not the dry run's marker, nor its plan.json
    files = sorted(out.glob("[0-9]*-*.json"))
    assert len(files) == math.ceil(75 / 50)
    assert all(_mode(f) == 0o600 for f in files)
    bodies = [json.loads(f.read_bytes()) for f in files]
    assert sorted(c["sourceCustomerId"] for b in bodies for c in b["customers"]) == sorted(
        _ids(source)
    )
    with SqliteLedger.open(state, read_only=True) as ledger:
        assert ledger.known_customer_count() == 0  # nothing counts as delivered


# --- a rejected customer: exit 1, dead letters, replay ----------------------------------------
def test_a_rejected_customer_exits_1_is_exported_and_replayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    refused = _ids(source)[7]
    state, report = tmp_path / "state", tmp_path / "report.json"
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        status = main(_run(source, stub.url, state, "--report", str(report)))
        accepted = set(stub.accepted)
    assert status == 1
    data = json.loads(report.read_text())
    assert (data["customers_sent"], data["customers_failed"]) == (59, 1)
    assert accepted == set(_ids(source)) - {refused}
    assert {b["status"] for b in data["batches"]} == {"acknowledged", "rejected"}

    # the dead letters, exported owner-only, without the documents unless asked
    letters = tmp_path / "letters.jsonl"
    letters.write_text("stale")
    os.chmod(letters, 0o644)
    capsys.readouterr()
    assert main(["dead-letters", str(letters), "--state", str(state)]) == 0
    assert f"wrote 1 dead letters to {letters}" in capsys.readouterr().out
    assert _mode(letters) == 0o600
    (line,) = letters.read_text().splitlines()
    letter = json.loads(line)
    assert (letter["sourceCustomerId"], letter["kind"], letter["httpStatus"]) == (
        refused,
        "rejected",
        400,
    )
    assert letter["method"] == "POST" and "document" not in letter
    assert main(["dead-letters", str(letters), "--state", str(state), "--documents"]) == 0
    assert json.loads(letters.read_text())["document"]["sourceCustomerId"] == refused
    assert _mode(letters) == 0o600

    # replay: a dry run writes the one body; a partner that now accepts it gets it, once
    dry = tmp_path / "dry"
    assert main(["replay", "--state", str(state), "--dry-run", str(dry)]) == 0
    (body,) = dry.glob("*.json")
    assert [c["sourceCustomerId"] for c in json.loads(body.read_bytes())["customers"]] == [refused]
    with serve_stub_in_thread() as stub:
        replayed = tmp_path / "replay.json"
        arguments = ["replay", "--api-url", stub.url, "--state", str(state)]
        assert main([*arguments, "--report", str(replayed)]) == 0
        assert {cid: a.times for cid, a in stub.accepted.items()} == {refused: 1}
    assert json.loads(replayed.read_text())["customers_sent"] == 1
    assert main(["dead-letters", str(letters), "--state", str(state)]) == 0
    assert letters.read_text() == ""
    with SqliteLedger.open(state, read_only=True) as ledger:
        assert ledger.known_customer_count() == 60


def test_dead_letters_without_a_ledger_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "letters.jsonl"
    assert main(["dead-letters", str(out), "--state", str(tmp_path / "none")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("customer-sync: no ledger at ")
    assert not out.exists()


# --- the real command, as a subprocess -------------------------------------------------------
@pytest.mark.slow
def test_demo_delivers_the_sample_and_prints_the_report(tmp_path: Path) -> None:
    done = _cli_subprocess(["demo", "--no-progress"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rows read: customers 36, accounts 49, cards 60" in done.stdout
    assert "delivered: 36 sent (36 created, 0 updated), 0 unchanged, 0 failed" in done.stdout
    assert "counts reconcile" in done.stdout
    assert "the stand-in partner accepted 36 customers" in done.stdout
    assert "Traceback" not in done.stderr


def _card_data_in(output: str, source: Path) -> set[str]:
    """The extract's ``iin``, ``last4`` and ``postalCode`` values that ``output`` shows.

    URLs, paths and run or batch ids are taken out first: they hold ports and counters that
    may equal a card value by chance. Values of five characters or more count as whole
    tokens anywhere; shorter ones (``last4``, short postal codes) when quoted or written
    after their column name, the way a leaked row or document would show them.
    """
    text = re.sub(r"\S*(?:://|/|\d{8}T\d{6}Z)\S*", " ", output)
    cards, customers = read_table(source, "cards"), read_table(source, "customers")
    values = {*cards["iin"], *cards["last4"], *customers["postalCode"]} - {""}
    shown = set()
    for value in values:
        escaped = re.escape(value)
        token = rf"(?<![0-9A-Za-z]){escaped}(?![0-9A-Za-z])"
        if len(value) < 5:
            token = rf"(?:['\"=]|(?:last4|iin|postalCode)\W{{0,4}}){escaped}(?![0-9A-Za-z])"
        if re.search(token, text):
            shown.add(value)
    return shown


@pytest.mark.slow
def test_a_run_with_held_back_and_rejected_customers_shows_no_card_data(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 120)
    cards = read_table(source, "cards")
    # invalid values, so that their customers are held back and the rejects talk about them
    cards.loc[0, "iin"], cards.loc[len(cards) - 1, "last4"] = "49X1Z877", "7Q3Z"
    write_table(source, "cards", cards)
    refused = _ids(source)[60]
    report = tmp_path / "report.json"
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        arguments = _run(source, stub.url, tmp_path / "state", "--report", str(report))
        done = _cli_subprocess([*arguments, "--max-held-back", "0.5"])

    assert done.returncode == 1, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["customers_held_back"] >= 2 and data["customers_failed"] == 1
    assert "held back" in done.stdout and "rejected" in done.stderr  # the story is told
    assert _card_data_in(done.stdout + done.stderr, source) == set()
    # the check sees card data when it is there: a card row as a log line would show it
    row = cards.iloc[-1]
    leaked = f"INFO | held back {row.to_dict()}"
    assert {row["iin"], row["last4"]} <= _card_data_in(leaked, source)


@pytest.mark.slow
def test_an_aborted_run_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 3)
    (source / "cards.csv").unlink()
    done = _cli_subprocess(_run(source, "http://127.0.0.1:9", tmp_path / "state"))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("customer-sync:")]
    assert lines == [f"customer-sync: {source}: no cards.csv or cards.parquet in this folder"]
    assert "Traceback" not in done.stderr
