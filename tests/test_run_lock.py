"""Issue 11: one delivering run per ledger at a time (shards of one layout excepted).

The lock is real ``flock``s on files under ``<state>/locks``; two ledgers opened in this
process conflict exactly as two processes do (a ``flock`` belongs to an open file, not to a
process). The holder killed with SIGKILL is a real child process, and the two-runs test
starts real ``customer-sync run`` processes against the stand-in partner over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.interface import RunLocked
from customer_sync.ledger.sqlite import SqliteLedger
from tests.conftest import REPO
from tests.flow_support import run_sync, write_synthetic

WAIT = 120.0


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """The ledger the in-process tests lock: a SQLite state folder (``flock``), or a fresh
    PostgreSQL database (advisory locks and the ``delivery_holders`` table)."""
    if request.param == "sqlite":
        yield tmp_path
        return
    server = request.getfixturevalue("postgres_server")
    url = server.database()
    yield url
    server.drop(url)


def _locked(state: Path | str, owned: list[int] | None = None, partitions: int = 1) -> Any:
    ledger = open_ledger(state)
    ledger.lock_delivery(owned, partitions)
    return ledger


def test_a_second_run_is_refused_naming_the_first(where: Path | str) -> None:
    with _locked(where) as first:
        run_id = first.start_run({"test": True})
        started = first.runs()[0].started_at[:16]  # to the minute, as both write it
        with open_ledger(where) as second, pytest.raises(RunLocked) as refused:
            second.lock_delivery()
        message = str(refused.value)
        assert "\n" not in message
        assert run_id in message and f"pid {os.getpid()}" in message
        assert socket.gethostname() in message and started in message
    with _locked(where):  # released with the ledger
        pass


def test_shards_of_one_layout_share_the_lock_and_nothing_else_does(where: Path | str) -> None:
    with _locked(where, [0, 2], 4), _locked(where, [1, 3], 4):
        for owned, partitions in (([0], 4), (None, 1), ([1], 3), ([3], 4)):
            with open_ledger(where) as other, pytest.raises(RunLocked, match="chunks"):
                other.lock_delivery(owned, partitions)
    with _locked(where), open_ledger(where) as shard, pytest.raises(RunLocked):
        shard.lock_delivery([0], 2)  # a plain run holds it: no shard either


def test_wait_waits_for_the_holder_then_takes_the_lock(where: Path | str) -> None:
    first = _locked(where)
    threading.Timer(1.0, first.close).start()
    started = time.monotonic()
    with open_ledger(where) as second:
        second.lock_delivery(wait=None)
        assert time.monotonic() - started >= 0.9
    bounded = _locked(where)
    try:
        with open_ledger(where) as third, pytest.raises(RunLocked, match="waited"):
            third.lock_delivery(wait=0.5)
    finally:
        bounded.close()


_PG_HOLDER = """
import sys, time
from customer_sync.ledger.postgres import PostgresLedger
ledger = PostgresLedger.open(sys.argv[1])
ledger.lock_delivery()
print(ledger.start_run({"holder": True}), flush=True)
time.sleep(600)
"""


def test_a_postgresql_holder_killed_with_sigkill_frees_the_lock(postgres_server: Any) -> None:
    """The server drops a dead session's advisory locks: the next run takes the lock and
    removes the dead holder's row."""
    url = postgres_server.database()
    holder = subprocess.Popen(
        [sys.executable, "-c", _PG_HOLDER, url], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().decode().strip()
        assert run_id, "the holder did not start"
        with open_ledger(url) as other, pytest.raises(RunLocked, match=run_id):
            other.lock_delivery()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=WAIT)
    finally:
        holder.kill()
        holder.wait(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    with open_ledger(url) as next_run:
        while True:  # the server notices the dead connection at once on loopback, or soon
            try:
                next_run.lock_delivery()
                break
            except RunLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        next_run.start_run({"next": True})
        with psycopg.connect(url) as db:
            holders = db.execute("SELECT run_id FROM delivery_holders").fetchall()
        assert [h[0] for h in holders] != [run_id] and len(holders) == 1
    postgres_server.drop(url)


_HOLDER = """
import sys, time
from pathlib import Path
from customer_sync.ledger.sqlite import SqliteLedger
state = Path(sys.argv[1])
ledger = SqliteLedger.open(state)
ledger.lock_delivery()
run_id = ledger.start_run({"holder": True})
spool = state / "runs" / run_id / "spool.arrow"
spool.parent.mkdir(parents=True)
spool.write_bytes(b"card data")
print(run_id, flush=True)
time.sleep(600)
"""


@pytest.mark.usefixtures("prefect_harness")
def test_a_holder_killed_with_sigkill_frees_the_lock_and_its_spool_goes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state)], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        run_id = holder.stdout.readline().decode().strip()
        assert run_id, "the holder did not start"
        with SqliteLedger.open(state) as other, pytest.raises(RunLocked, match=run_id):
            other.lock_delivery()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=WAIT)
    finally:
        holder.kill()
        holder.wait(timeout=WAIT)
    spool = state / "runs" / run_id / "spool.arrow"
    assert spool.exists()

    source = write_synthetic(tmp_path / "in", 20)
    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, state)
    assert result.customers_sent == 20
    assert not spool.exists()  # settled by the next run: card data does not linger
    with SqliteLedger.open(state, read_only=True) as ledger:
        statuses = {run.run_id: run.status for run in ledger.runs()}
    assert statuses[run_id] == "crashed"
    assert not list((state / "locks").glob("holder-*"))


# --- real CLI processes ----------------------------------------------------------------
CUSTOMERS = 600


def _run_command(source: Path, url: str, state: Path, report: Path, *extra: str) -> list[str]:
    return [
        "run", str(source), "--api-url", url, "--state", str(state), "--concurrency", "1",
        "--no-progress", "--report", str(report), *extra,
    ]  # fmt: skip


def _child_environment() -> dict[str, str]:
    import prefect.settings

    return {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}


def _start(arguments: list[str], logs: Path) -> subprocess.Popen[bytes]:
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "customer_sync.cli.app", *arguments],
            cwd=REPO,
            env=_child_environment(),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {WAIT:.0f} s")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_two_cli_runs_on_one_state_deliver_every_customer_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delivering; B (no --wait) refused with exit 2 naming A; a replay refused; C
    (--wait) waits for A, then runs and sends nothing new."""
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    state = tmp_path / "state"
    # each answer takes 3 s until C is seen waiting: A is surely still delivering
    with serve_stub_in_thread(StubFaults(latency=3.0), keep_documents=False) as stub:
        first = _start(_run_command(source, stub.url, state, tmp_path / "a.json"), tmp_path / "a")
        processes = [first]
        try:
            _until(lambda: stub.counters.requests >= 1, "request of the first run")
            refused = _start(
                _run_command(source, stub.url, state, tmp_path / "b.json"), tmp_path / "b"
            )
            waiting = _start(
                _run_command(source, stub.url, state, tmp_path / "c.json", "--wait", "300"),
                tmp_path / "c",
            )
            processes += [refused, waiting]
            with SqliteLedger.open(state, read_only=True) as ledger:
                (holder,) = ledger.runs()

            # a replay while A delivers is refused too (in this process: no new imports)
            capsys.readouterr()
            assert main(["replay", "--state", str(state), "--api-url", stub.url]) == 2
            assert holder.run_id in capsys.readouterr().err

            assert refused.wait(timeout=WAIT) == 2
            errors = (tmp_path / "b" / "stderr").read_text()
            ours = [line for line in errors.splitlines() if line.startswith("customer-sync:")]
            assert len(ours) == 1 and "Traceback" not in errors, errors[-3000:]
            for part in (holder.run_id, holder.host, f"pid {holder.pid}", holder.started_at[:16]):
                assert part in ours[0]

            _until(
                lambda: "Waiting for the delivery lock" in (tmp_path / "c" / "stderr").read_text(),
                "waiting line from the --wait run",
            )
            stub.faults = dataclasses.replace(stub.faults, latency=0.0)
            assert first.wait(timeout=WAIT) == 0, (tmp_path / "a" / "stderr").read_text()[-3000:]
            assert waiting.wait(timeout=WAIT) == 0, (tmp_path / "c" / "stderr").read_text()[-3000:]
        finally:
            for process in processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=WAIT)
        accepted = {cid: a.times for cid, a in stub.accepted.copy().items()}

    assert len(accepted) == CUSTOMERS and set(accepted.values()) == {1}
    report_a = json.loads((tmp_path / "a.json").read_text())
    report_c = json.loads((tmp_path / "c.json").read_text())
    assert report_a["customers_sent"] == CUSTOMERS
    assert report_c["customers_sent"] == 0 and report_c["customers_unchanged"] == CUSTOMERS
    assert (
        not (tmp_path / "b.json").exists()
        or json.loads((tmp_path / "b.json").read_text())["customers_sent"] == 0
    )
