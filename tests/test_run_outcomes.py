"""A run says what happened: exit status == report's exit_status == the ledger's run row.

Every outcome is produced for real: the flow under the Prefect test harness, the stand-in
partner over HTTP on 127.0.0.1 (a wrong static token for the 401), a real SQLite ledger,
and the real command in a subprocess where the exit status and the absence of a
traceback are the point (a full disk is /dev/full, a file-size limit is RLIMIT_FSIZE).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.outcome import RunOutcome, decide_outcome, stop_of
from customer_sync.run.report import SyncResult
from customer_sync.schemas.errors import GuardTripped, InputError
from tests.conftest import REPO
from tests.flow_support import read_table, write_synthetic, write_table

WAIT = 180.0


def _run(source: Path, url: str, state: Path, report: Path, *options: str) -> list[str]:
    return [
        "run", str(source), "--api-url", url, "--state", str(state), "--no-progress",
        "--report", str(report), *options,
    ]  # fmt: skip


def _subprocess(
    arguments: list[str], *, env: dict[str, str] | None = None, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command against this session's Prefect test server, killed whatever
    happens; ``fsize`` sets RLIMIT_FSIZE in the child only."""
    import prefect.settings

    child_env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
    child_env["PYTHONPATH"] = str(REPO)
    child_env.update(env or {})

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    process = subprocess.Popen(
        [sys.executable, "-m", "customer_sync.cli.app", *arguments],
        cwd=REPO,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=limit,  # only setrlimit, before exec
    )
    try:
        out, err = process.communicate(timeout=WAIT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _one_line(stderr: str, *, subprocess: bool = True) -> str:
    """The one ``customer-sync:`` line; no traceback (checked on a real process's stderr:
    in this process, Prefect's console handler may still hold an earlier test's stream)."""
    if subprocess:
        assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("customer-sync:")]
    assert len(lines) == 1, stderr
    return lines[0]


def _last_run(state: Path) -> tuple[str, str | None]:
    with SqliteLedger.open(state, read_only=True) as ledger:
        run = ledger.last_run()
    assert run is not None
    return run.status, run.reason


def _batch_states(state: Path) -> list[str]:
    with sqlite3.connect(state / "ledger.sqlite3") as db:
        return [row[0] for row in db.execute("SELECT state FROM batches")]


# --- the table itself (pure) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("counts", "status", "exit_status"),
    [
        ({}, "completed", 0),
        ({"held_back": 1}, "incomplete", 1),
        ({"orphan_rows": 3}, "incomplete", 1),
        ({"rejected": 1, "failed": 1}, "incomplete", 1),
        ({"failed": 2}, "incomplete", 1),
    ],
)
def test_counts_decide_completed_or_incomplete(
    counts: dict[str, int], status: str, exit_status: int
) -> None:
    given = {"held_back": 0, "orphan_rows": 0, "rejected": 0, "failed": 0, **counts}
    outcome = decide_outcome(stop=None, **given)
    assert (outcome.status, outcome.exit_status) == (status, exit_status)
    assert (outcome.reason is None) == (status == "completed")


@pytest.mark.parametrize(
    ("error", "status", "exit_status"),
    [
        (GuardTripped("too many held back"), "aborted", 2),
        (InputError("customers.csv", "empty file"), "aborted", 2),
        (OSError(28, "No space left on device", "/dev/full"), "failed", 2),
        (RuntimeError("boom"), "failed", 2),
        (KeyboardInterrupt(), "interrupted", 130),
    ],
)
def test_a_stop_wins_over_the_counts(error: BaseException, status: str, exit_status: int) -> None:
    result = SyncResult(customers_read=5, customers_sent=5)
    result.stop(error)
    assert (result.outcome.status, result.exit_status) == (status, exit_status)
    report = json.loads(result.to_json())
    assert (report["status"], report["exit_status"]) == (status, exit_status)
    assert report["reason"] == stop_of(error).reason and report["aborted"] == report["reason"]


def test_the_first_stop_is_the_one_reported() -> None:
    result = SyncResult()
    result.stop(GuardTripped("guard"))
    result.stop(OSError(28, "No space left on device"))
    assert result.outcome == RunOutcome("aborted", "guard")


# --- real runs ----------------------------------------------------------------------------
pytestmark_flow = pytest.mark.usefixtures("prefect_harness")


@pytestmark_flow
def test_orphan_rows_make_the_run_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # every account and card points at holders not in the customers table (the effect of
    # ids read as numbers: 00412 became 412)
    source = write_synthetic(tmp_path / "in", 12)
    accounts = read_table(source, "accounts")
    accounts["sourceCustomerIds"] = "X" + accounts["sourceCustomerIds"]
    accounts["primarySourceCustomerId"] = "X" + accounts["primarySourceCustomerId"]
    write_table(source, "accounts", accounts)
    cards = read_table(source, "cards")
    cards["sourceCustomerId"] = "X" + cards["sourceCustomerId"]
    write_table(source, "cards", cards)
    report, state = tmp_path / "report.json", tmp_path / "state"
    with serve_stub_in_thread() as stub:
        # one customer's card is also held back (its holder is no longer on its account)
        status = main(_run(source, stub.url, state, report, "--max-held-back", "0.5"))

    assert status == 1
    data = json.loads(report.read_text())
    assert data["exit_status"] == 1 and data["status"] == "incomplete"
    # joint accounts keep their other holders: most rows, not all, became orphans
    orphans, orphan_cards = data["orphan_accounts"], data["orphan_cards"]
    assert orphans > len(accounts) // 2 and orphan_cards > len(cards) // 2
    ledger_status, reason = _last_run(state)
    assert ledger_status == "incomplete" and reason == data["reason"]
    assert f"{orphans + orphan_cards:,} orphan account/card rows" in reason
    out = capsys.readouterr().out
    assert f"orphans: accounts {orphans:,}, cards {orphan_cards:,}" in out
    assert "outcome: incomplete (exit status 1)" in out


@pytestmark_flow
def test_a_refused_token_fails_the_run_and_leaves_nothing_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 120)
    report, state = tmp_path / "report.json", tmp_path / "state"
    with serve_stub_in_thread(bearer_token="the-right-token") as stub:
        monkeypatch.setenv("CUSTOMER_SYNC_API_TOKEN", "a-wrong-token")
        status = main(_run(source, stub.url, state, report, "--batch-size", "10"))
        refused_requests = len(stub.requests)
        assert not stub.accepted

        assert status == 2
        line = _one_line(capsys.readouterr().err, subprocess=False)
        assert "401" in line
        data = json.loads(report.read_text())
        assert (data["exit_status"], data["status"]) == (2, "failed")
        assert "401" in data["reason"]
        ledger_status, reason = _last_run(state)
        assert ledger_status == "failed" and reason == data["reason"]
        states = _batch_states(state)
        assert states and set(states) == {"failed"}  # none left "sending"
        # the first refusal stops the sends: at most one per concurrent slot went out
        assert refused_requests <= 8

        monkeypatch.setenv("CUSTOMER_SYNC_API_TOKEN", "the-right-token")
        again = main(_run(source, stub.url, state, report))
        assert again == 0
        data = json.loads(report.read_text())
        assert data["interrupted_batches_resumed"] == 0 and data["customers_sent"] == 120
    assert _last_run(state)[0] == "completed"


@pytestmark_flow
def test_unreadable_input_aborts_with_the_same_status_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 5)
    (source / "cards.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x00\x01")
    report, state = tmp_path / "report.json", tmp_path / "state"
    with serve_stub_in_thread() as stub:
        status = main(_run(source, stub.url, state, report))
        assert not stub.requests
    assert status == 2
    _one_line(capsys.readouterr().err, subprocess=False)
    data = json.loads(report.read_text())
    assert (data["exit_status"], data["status"]) == (2, "aborted")
    if (state / "ledger.sqlite3").exists():  # found while reading: the run is recorded
        assert _last_run(state) == ("aborted", data["reason"])


@pytestmark_flow
def test_a_full_disk_for_the_report_fails_the_run_but_the_ledger_keeps_what_was_sent(
    tmp_path: Path,
) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        done = _subprocess(_run(source, stub.url, state, Path("/dev/full")))
        accepted = set(stub.accepted)
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith("customer-sync: /dev/full: cannot write the report")
    assert len(accepted) == 60  # everything was delivered ...
    ledger_status, reason = _last_run(state)
    assert ledger_status == "failed" and reason is not None and "/dev/full" in reason
    with SqliteLedger.open(state, read_only=True) as ledger:  # ... and the ledger knows it
        assert ledger.known_customer_count() == 60
        assert ledger.runs()[0].counts["customers_sent"] == 60


@pytestmark_flow
def test_a_file_size_limit_fails_the_run_in_one_line(tmp_path: Path) -> None:
    # the spool of planned documents is the first file to outgrow 64 KiB: EFBIG midway
    source = write_synthetic(tmp_path / "in", 150)
    state, report = tmp_path / "state", tmp_path / "report.json"
    SqliteLedger.open(state).close()  # the ledger's pages exist: its writes stay small
    with serve_stub_in_thread() as stub:
        done = _subprocess(_run(source, stub.url, state, report), fsize=64 * 1024)
        assert not stub.accepted
    assert done.returncode == 2, done.stderr
    assert "File too large" in _one_line(done.stderr)
    data = json.loads(report.read_text())
    assert (data["exit_status"], data["status"]) == (2, "failed")
    assert _last_run(state) == ("failed", data["reason"])


@pytestmark_flow
def test_a_report_that_outgrows_the_file_size_limit_fails_the_run(tmp_path: Path) -> None:
    # close_run itself in a child with RLIMIT_FSIZE: the report (thousands of ids) cannot
    # be written, the ledger's small write can
    state = tmp_path / "state"
    with SqliteLedger.open(state) as ledger:
        run_id = ledger.start_run({"case": "report too large"})
    script = f"""
import asyncio, sys
from pathlib import Path
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.report import SyncResult
from customer_sync.run.session import close_run
from customer_sync.schemas.records import BatchOutcome
ids = tuple(f"C{{n:09d}}" for n in range(5000))
result = SyncResult(run_id={run_id!r}, customers_read=5000, customers_sent=5000)
result.batches.extend([BatchOutcome("b", "POST", ids, "acknowledged", 1, 200, "r")])
try:
    asyncio.run(close_run(result, SqliteLedger.open(Path({str(state)!r})), {run_id!r},
                          Path({str(tmp_path / "report.json")!r}), {{"customers_sent": 5000}}))
except Exception as error:
    print(type(error).__name__, error)
    sys.exit(2)
"""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=WAIT,
        preexec_fn=limit,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("ReportNotWritten") and "File too large" in done.stdout
    ledger_status, reason = _last_run(state)
    assert ledger_status == "failed" and reason is not None and "File too large" in reason


def test_the_report_is_owner_only_even_over_an_older_one(tmp_path: Path) -> None:
    from customer_sync.run.report import write_report

    older = tmp_path / "report.json"
    older.write_text("{}")
    older.chmod(0o644)
    for target in (older, tmp_path / "new" / "report.json"):
        write_report(SyncResult(customers_read=1, customers_sent=1), target)
        assert target.stat().st_mode & 0o777 == 0o600
        assert json.loads(target.read_text())["exit_status"] == 0
