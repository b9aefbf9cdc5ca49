"""Issue 4's crash test: ``customer-sync run`` killed with SIGKILL before, during and after
sending, then the same command run again.

The run is a real subprocess (its own process group, killed whole), the partner is the
stand-in server over real HTTP on 127.0.0.1, the ledger a real SQLite file (or, in the
``postgresql`` variants, a database of the real PostgreSQL server the tests start, the run's
liveness an advisory lock that the server drops when the killed process's session ends).
The stand-in
runs in this process's thread form so that it can say how many times it accepted each
customer; it answers ``LATENCY`` after a request arrives, so every batch is in flight for
that long, and the kill points below are conditions polled on the stand-in or the ledger,
not timers.

After each kill the same command runs again (in this process, which never held the
killed run's lock; a new process would only add seconds of imports): it exits 0, every
customer is acknowledged (ledger) and accepted (stand-in); a customer was accepted twice
only if its batch was in flight at the kill (the batches the ledger left ``sending``), so
re-sends are at most ``CONCURRENCY`` batches of 50; the second run reports those batches
as resumed and marks them ``interrupted`` and the killed run ``crashed``; a third run
sends nothing.

Why the stand-in runs in this process: a kill point is "the stand-in accepted the last
batch" and the answer leaves ``LATENCY`` later from this same process, so the kill cannot
lose that race to a stall of this process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, StubPartner, serve_stub_in_thread
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.url import is_database_url
from tests.conftest import REPO
from tests.flow_support import read_table, write_synthetic

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

CUSTOMERS = 1_500
BATCHES = CUSTOMERS // 50
CONCURRENCY = 2
LATENCY = 0.1
"""Seconds each batch waits for its answer: 30 batches two at a time are 1.5 s of sending."""
WAIT = 120.0


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("crash") / "extract", CUSTOMERS)


def _arguments(source: Path, url: str, state: Path | str, report: Path) -> list[str]:
    return [
        "run",
        str(source),
        "--api-url",
        url,
        "--state",
        str(state),
        "--concurrency",
        str(CONCURRENCY),
        "--no-progress",
        "--report",
        str(report),
    ]


def _child_environment() -> dict[str, str]:
    """This session's Prefect test server instead of an ephemeral one per process."""
    import prefect.settings

    return {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}


@contextmanager
def _cli(arguments: list[str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``customer-sync <arguments>`` in its own process group, killed whole on the way out."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "customer_sync.cli.app", *arguments],
            cwd=REPO,
            env=_child_environment(),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _kill_group(process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=WAIT)


def _tail(logs: Path) -> str:
    return (logs / "stderr").read_text(errors="replace")[-3000:]


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT:.0f} s")
        time.sleep(0.005)


def _ledger_count(state: Path | str, statement: str) -> int:
    """A count from the ledger as a reader in another process sees it (0 until it exists)."""
    if isinstance(state, str):
        try:
            with psycopg.connect(state, autocommit=True) as pg:
                return int(pg.execute(statement).fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:  # not yet migrated
            return 0
    path = state / "ledger.sqlite3"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return int(db.execute(statement).fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:  # created but not yet migrated
        return 0


def _accepted(stub: StubPartner) -> dict[str, int]:
    """How many times the stand-in accepted each customer (dict.copy is atomic)."""
    return {cid: accepted.times for cid, accepted in stub.accepted.copy().items()}


# Each kill point: the condition polled before the SIGKILL.
KILL_POINTS: dict[str, Callable[[StubPartner, Path], bool]] = {
    # the run has started (its ledger row exists) and is still reading and planning
    "before-sending": lambda stub, state: _ledger_count(state, "SELECT count(*) FROM runs") > 0,
    # a third of the batches reached the partner
    "mid-sending": lambda stub, state: stub.counters.accepted_requests >= BATCHES // 3,
    # every batch reached the partner; the last answers are still on their way
    "all-accepted": lambda stub, state: stub.counters.accepted_requests >= BATCHES,
    # every outcome is in the ledger; the run is writing its report and finishing
    "all-recorded": lambda stub, state: (
        _ledger_count(state, "SELECT count(*) FROM acknowledged") >= CUSTOMERS
    ),
}


@pytest.mark.parametrize(
    ("kill_point", "backend"),
    [(point, "sqlite") for point in KILL_POINTS]
    # on PostgreSQL the kills that leave batches in flight (the advisory lock must be gone)
    + [("mid-sending", "postgresql"), ("all-accepted", "postgresql")],
)
def test_a_run_killed_with_sigkill_is_resumed_by_the_same_command(
    extract: Path,
    tmp_path: Path,
    kill_point: str,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = list(read_table(extract, "customers")["sourceCustomerId"])
    report = tmp_path / "report.json"
    state: Path | str = tmp_path / "state"
    if backend == "postgresql":
        state = request.getfixturevalue("postgres_server").database()
        monkeypatch.setenv("CUSTOMER_SYNC_WORK_DIR", str(tmp_path / "work"))  # run folders
    with serve_stub_in_thread(StubFaults(latency=LATENCY), keep_documents=False) as stub:
        arguments = _arguments(extract, stub.url, state, report)

        # 1. the run, killed at the kill point
        with _cli(arguments, tmp_path / "killed") as killed:
            _wait_until(lambda: KILL_POINTS[kill_point](stub, state), killed, kill_point)
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(timeout=WAIT)
        assert killed.returncode == -signal.SIGKILL, _tail(tmp_path / "killed")
        sent_before_rerun = _accepted(stub)

        with open_ledger(state, read_only=True) as ledger:
            (killed_run,) = ledger.runs()
            interrupted = ledger.interrupted_batches()
            acknowledged = ledger.acknowledged_fingerprints(ids)
        in_flight = {cid for batch in interrupted for cid in batch.customer_ids}
        assert killed_run.pid == killed.pid
        assert all(b.run_id == killed_run.run_id and b.state == "sending" for b in interrupted)
        assert len(interrupted) <= CONCURRENCY
        assert all(len(b.customer_ids) <= 50 for b in interrupted)
        # the ledger acknowledged only what the partner accepted, and what the partner
        # accepted without the ledger knowing is in a batch left in flight
        assert set(acknowledged) <= set(sent_before_rerun)
        assert set(sent_before_rerun) <= set(acknowledged) | in_flight
        if kill_point == "before-sending":
            assert killed_run.status == "running"
            assert stub.counters.requests == 0 and not interrupted and not acknowledged
        elif kill_point in ("mid-sending", "all-accepted"):
            assert killed_run.status == "running"
            assert len(interrupted) >= 1 and len(acknowledged) < CUSTOMERS
            assert kill_point == "mid-sending" or len(sent_before_rerun) == CUSTOMERS
        else:
            assert len(acknowledged) == CUSTOMERS and not interrupted

        # 2. the same command again, to completion (in this process: a new process would
        # only add seconds of imports; nothing of the killed one is shared)
        report.unlink(missing_ok=True)
        assert main(arguments) == 0
        result = json.loads(report.read_text())
        sent = _accepted(stub)

        assert result["interrupted_batches_resumed"] == len(interrupted)
        assert result["customers_unchanged"] == len(acknowledged)
        assert result["customers_sent"] == CUSTOMERS - len(acknowledged)
        assert result["customers_failed"] == result["customers_held_back"] == 0
        assert result["reconciles"] is True
        assert set(sent) == set(ids)
        sent_twice = {cid for cid, times in sent.items() if times > 1}
        assert sent_twice <= in_flight
        assert len(sent_twice) <= CONCURRENCY * 50
        assert max(sent.values()) <= 2
        if kill_point in ("before-sending", "all-recorded"):
            assert not sent_twice
        if kill_point == "all-recorded":
            assert sent == sent_before_rerun  # the rerun sent nothing

        with open_ledger(state, read_only=True) as ledger:
            after = ledger.acknowledged_fingerprints(ids)
            runs = {run.run_id: run for run in ledger.runs()}
            assert ledger.interrupted_batches() == []
        assert set(after) == set(ids)
        assert {cid: after[cid] for cid in acknowledged} == acknowledged
        assert runs[killed_run.run_id].status in (
            ("crashed", "completed") if kill_point == "all-recorded" else ("crashed",)
        )
        states = _batch_states(state, killed_run.run_id)
        assert states.get("interrupted", 0) == len(interrupted)
        assert "sending" not in states

        # 3. once more: nothing left to send
        report.unlink()
        assert main(arguments) == 0
        third = json.loads(report.read_text())
        assert _accepted(stub) == sent
    assert third["customers_sent"] == 0
    assert third["customers_unchanged"] == CUSTOMERS
    assert third["interrupted_batches_resumed"] == 0
    assert third["batches"] == []


def _batch_states(state: Path | str, run_id: str) -> dict[str, int]:
    if is_database_url(state):
        with psycopg.connect(str(state)) as pg:
            found = pg.execute(
                "SELECT state, count(*) FROM batches WHERE run_id = %s GROUP BY state", (run_id,)
            ).fetchall()
        return {row[0]: int(row[1]) for row in found}
    assert isinstance(state, Path)
    db = sqlite3.connect(f"{(state / 'ledger.sqlite3').as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT state, count(*) FROM batches WHERE run_id = ? GROUP BY state", (run_id,)
        ).fetchall()
    finally:
        db.close()
    return dict(rows)
