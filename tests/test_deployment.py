"""The deployments, for real: prefect.yaml deployed to a Prefect server, run by a worker.

What a user does, in the order they do it: start a Prefect server, create the `process`
work pool and the ledger's queue, `prefect deploy` from a clone of the repository, start a
worker in a folder of its own (the pull step clones the deployed commit from the
"remote", a bare clone of this repository reached by file://), keep the partner token in a
Secret block, run the deployments. The partner is the stand-in server on 127.0.0.1; runs
are checked through Prefect's API (states, artifacts, logs, events, automations) and
against what the stand-in partner received. One server, worker and deployment for the
whole module (each start costs tens of seconds on 2 cores).

Every process the test starts is in its own session and is stopped by the test, with its
whole process tree (also when the test fails); all Prefect state is in a temporary
PREFECT_HOME; nothing listens or connects beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parent.parent
PREFECT_FILE = REPO / "prefect.yaml"
POOL = "customer-sync"
DEPLOYMENT = "sync-customers/sync-customers"
REPLAY = "replay-dead-letters/replay-dead-letters"
LEDGER_QUEUE = "customer-sync-ledger"
TOKEN_BLOCK = "customer-sync-api-token"
PARTNER_TOKEN = "deployment-test-partner-token"  # a made-up bearer the stand-in accepts

# Generous bounds for waits only; nothing asserts how long anything took.
SERVER_STARTUP_TIMEOUT = 180.0
CLI_TIMEOUT = 180.0
RUN_TIMEOUT = 300.0
STOP_TIMEOUT = 15.0


# --- processes ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (Linux /proc; empty elsewhere), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _signal_tree(pids: list[int], signum: int) -> None:
    """``signum`` once to each process: by process group where it leads one of its own
    (never our group), else by pid. Once, because a second SIGTERM makes a Prefect worker
    skip its graceful shutdown."""
    own_group = os.getpgrp()
    groups: set[int] = set()
    loners: list[int] = []
    for pid in pids:
        try:
            group = os.getpgid(pid)
        except (ProcessLookupError, PermissionError):
            continue
        if group != own_group and group in pids:
            groups.add(group)
        else:
            loners.append(pid)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)
    for pid in loners:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


@dataclass
class Started:
    """A long-running command started by the test, and its combined output."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- last lines of the {self.name} log ({self.log}) ---\n" + "\n".join(
            text[-lines:]
        )

    def stop(self) -> None:
        """SIGTERM to the whole tree (a worker's flow runs and a server's children too),
        SIGKILL to whatever is left after STOP_TIMEOUT seconds."""
        tree = [self.process.pid, *_descendants(self.process.pid)]
        _signal_tree(tree, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        leftover = [pid for pid in tree if _alive(pid)]
        while leftover and time.monotonic() < deadline:
            time.sleep(0.1)
            leftover = [pid for pid in leftover if _alive(pid)]
        # Descendants started after the first look (a flow run submitted meanwhile).
        leftover += [pid for pid in _descendants(self.process.pid) if pid not in leftover]
        _signal_tree([self.process.pid, *leftover], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not running.
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _prefect(*arguments: str) -> list[str]:
    """The Prefect CLI of the environment running the tests (the project's .venv)."""
    return [sys.executable, "-m", "prefect", *arguments]


@contextlib.contextmanager
def _started(
    name: str, command: list[str], env: dict[str, str], logs: Path, cwd: Path = REPO
) -> Iterator[Started]:
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = Started(name, process, log)
    try:
        yield started
    finally:
        started.stop()


def _run_cli(env: dict[str, str], *arguments: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        _prefect(*arguments),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`prefect {' '.join(arguments)}` failed:\n{output}"
    return output


def _wait_for_health(api_url: str, server: Started) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    deadline = time.monotonic() + SERVER_STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"the Prefect server exited with {server.process.returncode}\n{server.tail()}"
            )
        try:
            with opener.open(f"{api_url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the Prefect server did not answer /api/health in time\n{server.tail()}")


# --- fixtures (one server, worker and deployment per module) ---------------------------------


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    env: dict[str, str]
    """The environment of every Prefect command of the test (server, CLI, worker)."""
    logs: Path
    process: Started


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployment")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients of this process (Prefect's httpx, urllib) talk to 127.0.0.1 directly."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, with its own PREFECT_HOME, once per
    module (other modules import this fixture). Its triggers and actions services run
    (the automations test needs them)."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    folder = tmp_path_factory.mktemp("prefect-server")
    home = folder / "prefect-home"
    home.mkdir()
    logs = folder / "logs"
    logs.mkdir()
    # Nothing of the developer's own Prefect profile, API or partner credentials leaks in.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "CUSTOMER_SYNC_"))
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        # Runs are started by the test, not by the schedule: without the scheduler no
        # nightly run can come due in the middle of the test, however late CI runs it.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    command = _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port))
    with (
        pytest.MonkeyPatch.context() as patch,
        _started("server", command, env, logs) as server,
    ):
        # Clients of this process (Prefect's httpx, urllib) talk to 127.0.0.1 directly.
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "127.0.0.1,localhost")
        _wait_for_health(api_url, server)
        yield PrefectServer(api_url, env, logs, server)


@pytest.fixture(scope="module")
def remote(workspace: Path) -> str:
    """The "remote": a bare clone of this repository, reached by file:// (no network)."""
    bare = workspace / "remote.git"
    subprocess.run(
        ["git", "clone", "--bare", "--quiet", str(REPO), str(bare)], check=True, timeout=120
    )
    return f"file://{bare}"


@pytest.fixture(scope="module")
def deploy_checkout(workspace: Path, remote: str) -> Path:
    """Where `prefect deploy` runs: a clone of the remote, not the test's checkout."""
    checkout = workspace / "deployer"
    subprocess.run(["git", "clone", "--quiet", remote, str(checkout)], check=True, timeout=120)
    return checkout


@pytest.fixture(scope="module")
def work_pool(prefect_server: PrefectServer) -> str:
    """The `process` work pool and the ledger's queue (one run at a time), as
    docs/deploy.md says."""
    _run_cli(prefect_server.env, "work-pool", "create", POOL, "--type", "process")
    _run_cli(
        prefect_server.env,
        "work-queue", "create", LEDGER_QUEUE, "--pool", POOL, "--limit", "1",
    )  # fmt: skip
    return POOL


@pytest.fixture(scope="module")
def worker(prefect_server: PrefectServer, work_pool: str, workspace: Path) -> Iterator[Started]:
    """`prefect worker start` on the pool, from a folder of its own (no checkout in it),
    two flow runs at a time (so only the ledger queue's limit can keep two runs apart)."""
    folder = workspace / "worker"
    folder.mkdir()
    command = _prefect(
        "worker", "start", "--pool", work_pool, "--type", "process", "--limit", "2",
        "--name", "deployment-test-worker",
    )  # fmt: skip
    with _started(
        "worker", command, prefect_server.env, prefect_server.logs, cwd=folder
    ) as started:
        yield started


@pytest.fixture(scope="module")
def deployed(
    prefect_server: PrefectServer, worker: Started, deploy_checkout: Path, remote: str
) -> str:
    """prefect.yaml deployed with the real CLI from the deployer's clone, without prompts
    (the worker boots meanwhile), the repository named by CUSTOMER_SYNC_REPOSITORY."""
    env = {**prefect_server.env, "CUSTOMER_SYNC_REPOSITORY": remote}
    return _run_cli(
        env, "--no-prompt", "deploy", "--name", "sync-customers", "--name",
        "replay-dead-letters", cwd=deploy_checkout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def partner_token(prefect_server: PrefectServer) -> str:
    """The operator keeps the partner token in the Secret block (docs/deploy.md)."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        Secret(value=PARTNER_TOKEN).save(TOKEN_BLOCK, overwrite=True)
    return PARTNER_TOKEN


@pytest.fixture
def api(prefect_server: PrefectServer) -> Iterator[None]:
    """This process's Prefect client points at the module's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield


# --- helpers ---------------------------------------------------------------------------------


def _sample_customer_ids() -> set[str]:
    with (REPO / "data" / "customers.csv").open(newline="", encoding="utf-8") as handle:
        return {row["sourceCustomerId"] for row in csv.DictReader(handle)}


def _held_back_ids(rejects: str | None) -> set[str]:
    if not rejects or not Path(rejects).is_file():
        return set()
    with Path(rejects).open(newline="", encoding="utf-8") as handle:
        return {
            customer
            for row in csv.DictReader(handle)
            for customer in (row.get("held_back_customers") or "").split("|")
            if customer
        }


async def _wait_for_final_state(client: Any, flow_run_id: Any, worker: Started) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited with {worker.process.returncode}\n{worker.tail()}")
        await asyncio.sleep(0.5)
    pytest.fail(f"the flow run did not finish in {RUN_TIMEOUT:.0f} s\n{worker.tail()}")


async def _wait_for_logs(client: Any, flow_run_id: Any, logger_prefix: str) -> list[Any]:
    """The run's logs once one from ``logger_prefix`` arrived (logs ship in batches)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + 60.0
    logs: list[Any] = []
    while time.monotonic() < deadline:
        logs = await client.read_logs(log_filter=log_filter)
        if any(log.name.startswith(logger_prefix) for log in logs):
            break
        await asyncio.sleep(0.5)
    return logs


def _events(api_url: str, prefix: str) -> list[dict[str, Any]]:
    """Events whose name starts with ``prefix``, as the server's events API returns them."""
    body = json.dumps(
        {"filter": {"event": {"prefix": [prefix]}, "order": "ASC"}, "limit": 50}
    ).encode()
    request = urllib.request.Request(
        f"{api_url}/events/filter",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        events: list[dict[str, Any]] = json.loads(answer.read())["events"]
    return events


def _wait_for_events(api_url: str, prefix: str, run_id: str, count: int) -> list[dict[str, Any]]:
    """The events about the run ``run_id`` (the events worker ships them in batches)."""
    deadline = time.monotonic() + 60.0
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [
            event
            for event in _events(api_url, prefix)
            if event["resource"].get("prefect.resource.name") == run_id
        ]
        if len(found) >= count:
            break
        time.sleep(0.5)
    return found


class WebhookReceiver:
    """A local HTTP endpoint on 127.0.0.1 that records every request body it gets."""

    def __init__(self) -> None:
        import http.server
        import threading

        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, *subjects: str, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Every request received, once each of ``subjects`` is in one (or at the timeout):
        notifications come in any order, and a proactive one may come more than once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = " | ".join(str(call.get("subject")) for call in self.received)
            if all(subject in seen for subject in subjects):
                break
            time.sleep(0.25)
        return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# --- the tests ------------------------------------------------------------------------------


async def test_the_nightly_deployment_runs_on_a_worker_from_a_clone_and_delivers_everything(
    prefect_server: PrefectServer,
    worker: Started,
    deployed: str,
    partner_token: str,
    remote: str,
    api: None,
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from customer_sync.devtools.stub_server import serve_stub_in_thread
    from customer_sync.flows.secrets import apartner_token_from_block, partner_token_from_block

    assert await apartner_token_from_block(TOKEN_BLOCK) == partner_token
    assert await asyncio.to_thread(partner_token_from_block, TOKEN_BLOCK) == partner_token
    assert await apartner_token_from_block("no-such-block") is None
    state_dir = tmp_path / "state"
    config = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    declared = {d["name"]: d for d in config["deployments"]}
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()

    with serve_stub_in_thread(bearer_token=partner_token) as stub:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            replay = await client.read_deployment_by_name(REPLAY)

            # What prefect.yaml declares is what the server holds.
            nightly = declared["sync-customers"]
            assert deployment.entrypoint == nightly["entrypoint"]
            assert deployment.work_pool_name == POOL
            assert deployment.parameters == nightly["parameters"]
            assert deployment.job_variables == nightly["work_pool"]["job_variables"]
            # Every run clones the deployed commit from the repository: the worker's
            # folder has no checkout.
            assert deployment.pull_steps == [
                {
                    "prefect.deployments.steps.git_clone": {
                        "id": "clone",
                        "repository": remote,
                        "commit_sha": head,
                    }
                }
            ]
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == 1
            [schedule] = deployment.schedules
            declared_schedule = nightly["schedules"][0]
            assert schedule.active
            assert schedule.schedule.cron == declared_schedule["cron"]
            assert schedule.schedule.timezone == declared_schedule["timezone"]
            # The replay shares the nightly run's queue (one ledger writer at a time).
            assert replay.entrypoint == declared["replay-dead-letters"]["entrypoint"]
            assert replay.work_queue_name == deployment.work_queue_name == LEDGER_QUEUE
            assert replay.pull_steps == deployment.pull_steps
            assert not replay.schedules

            flow_run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={
                    # Relative on purpose: it resolves only in the clone the pull step
                    # made (the worker's own folder has no data/).
                    "extract": {"source": "data"},
                    "partner": {"api_url": stub.url},
                    "state": {"state_dir": str(state_dir)},
                },
            )
            finished = await _wait_for_final_state(client, flow_run.id, worker)
            assert finished.state is not None
            assert finished.state.is_completed(), (
                f"the run ended {finished.state.type.value}: {finished.state.message}\n"
                f"{worker.tail(120)}"
            )
            assert finished.name == f"sync-{finished.expected_start_time.date()}-data"

            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
                )
            )
            by_key = {artifact.key: artifact for artifact in artifacts}
            assert "sync-summary" in by_key, f"artifacts of the run: {sorted(map(str, by_key))}"
            assert by_key["sync-summary"].type == "markdown"
            assert "counts reconcile" in str(by_key["sync-summary"].data)
            if "delivery-progress" in by_key:
                assert by_key["delivery-progress"].data == pytest.approx(100.0)

            logs = await _wait_for_logs(client, flow_run.id, "customer_sync.")
            assert any(log.name.startswith("customer_sync.") for log in logs), (
                "the flow's own INFO log did not reach the run's log in Prefect: "
                f"loggers seen {sorted({log.name for log in logs})}"
            )
            assert not any(partner_token in log.message for log in logs)

    [report_path] = state_dir.glob("runs/*/report.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    expected = _sample_customer_ids() - _held_back_ids(report.get("rejects"))
    assert expected, "the sample extract has no valid customer"
    assert report["reconciles"] and report["exit_status"] == 0
    assert report["customers_failed"] == 0
    assert report["customers_sent"] == len(expected)
    assert set(stub.accepted) == expected
    assert all(customer.times == 1 for customer in stub.accepted.values())
    # The partner token came from the Secret block: the stand-in accepts only that bearer,
    # and the flow never fell back to the session-token login.
    assert stub.counters.unauthorized == 0
    assert stub.counters.sessions_started == 0


PLANTED_POSTAL_CODE = "QZ7 4XW"
PLANTED_IIN = "537913"
PLANTED_LAST4 = "8642"


def _bad_night(folder: Path) -> str:
    """The sample extract with one customer held back (an unknown country) who carries
    planted card data and postal code; that customer's id."""
    import shutil

    shutil.copytree(REPO / "data", folder)
    with (folder / "customers.csv").open(newline="", encoding="utf-8") as handle:
        customers = list(csv.DictReader(handle))
    held = customers[0]
    held["country"], held["postalCode"] = "XX", PLANTED_POSTAL_CODE
    with (folder / "customers.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(customers[0]))
        writer.writeheader()
        writer.writerows(customers)
    with (folder / "cards.csv").open(newline="", encoding="utf-8") as handle:
        cards = list(csv.DictReader(handle))
    for card in cards:
        if card["sourceCustomerId"] == held["sourceCustomerId"]:
            card["iin"], card["last4"] = PLANTED_IIN, PLANTED_LAST4
    with (folder / "cards.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(cards[0]))
        writer.writeheader()
        writer.writerows(cards)
    return held["sourceCustomerId"]


async def test_a_bad_night_ends_incomplete_emits_its_counts_and_notifies(
    prefect_server: PrefectServer,
    worker: Started,
    deployed: str,
    partner_token: str,
    api: None,
    tmp_path: Path,
) -> None:
    import re

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    from customer_sync.devtools.stub_server import serve_stub_in_thread
    from customer_sync.flows.automations import HELD_BACK, NO_SUCCESS, NON_GREEN, amain

    held_id = _bad_night(tmp_path / "landing" / "2026-11-25")
    receiver = WebhookReceiver()
    try:
        await CustomWebhookNotificationBlock(
            name="customer-sync-alerts",
            url=receiver.url,
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
        ).asave("customer-sync-alerts", overwrite=True)
        # the documented command, in this process; "no successful run" after 15 s (its
        # window starts now, and this bad night will not complete)
        command = ["--block", "custom-webhook/customer-sync-alerts"]
        assert await amain(command) == 0
        assert await amain([*command, "--hours-without-success", "0.004"]) == 0  # replaced
        async with get_client() as client:
            names = [automation.name for automation in await client.read_automations()]
            assert sorted(names) == sorted(set(names)), "created twice instead of replaced"
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            with serve_stub_in_thread(bearer_token=partner_token) as stub:
                flow_run = await client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={
                        # the night's own folder, by the date template
                        "extract": {
                            "source": str(tmp_path / "landing" / "{date}"),
                            "landing_date": "2026-11-25",
                        },
                        "partner": {"api_url": stub.url},
                        "state": {"state_dir": str(tmp_path / "state")},
                    },
                )
                finished = await _wait_for_final_state(client, flow_run.id, worker)
            assert held_id not in stub.accepted and len(stub.accepted) == 35
        state = finished.state
        assert (state.type.value, state.name) == ("FAILED", "Incomplete"), (
            f"{state.type.value} {state.name}: {state.message}\n{worker.tail(120)}"
        )
        assert "1 customers held back" in state.message
        assert "35 customers delivered of 36 read" in state.message
        assert finished.name == "sync-2026-11-25-landing"
        assert finished.run_count == 1  # an incomplete run is not retried

        [report_path] = (tmp_path / "state").glob("runs/*/report.json")
        report = json.loads(report_path.read_text(encoding="utf-8"))
        assert report["exit_status"] == 1 and report["status"] == "incomplete"

        # The run's events, as the server stored them: the counts, nothing of the data.
        events = _wait_for_events(prefect_server.api_url, "customer-sync.", report["run_id"], 2)
        by_name = {event["event"]: event for event in events}
        assert set(by_name) == {
            "customer-sync.run.incomplete",
            "customer-sync.run.held-back-above-threshold",
        }, by_name
        counts = by_name["customer-sync.run.incomplete"]["payload"]
        assert (counts["read"], counts["delivered"], counts["held_back"]) == (36, 35, 1)
        assert counts["rejected"] == 0 and counts["failed"] == 0
        assert counts["held_back_by_reason"].get("customers.country:country_code") == 1
        related = by_name["customer-sync.run.incomplete"]["related"]
        assert f"prefect.flow-run.{flow_run.id}" in {r["prefect.resource.id"] for r in related}
        text = re.sub(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", json.dumps(events)
        )
        for planted in (PLANTED_POSTAL_CODE, PLANTED_IIN, PLANTED_LAST4, held_id):
            assert planted not in text, f"{planted!r} in the run's events"

        # The automations fired: the webhook on 127.0.0.1 got all three notifications.
        received = receiver.wait_for(
            "sync-2026-11-25-landing ended Incomplete",
            "held back above the threshold",
            "no successful sync-customers run",
        )
        subjects = " | ".join(str(call.get("subject")) for call in received)
        assert len(received) >= 2, (
            f"notifications received: {received}\n{prefect_server.process.tail()}"
        )
        assert "sync-2026-11-25-landing ended Incomplete" in subjects
        assert "held back above the threshold" in subjects
        assert "no successful sync-customers run" in subjects  # the proactive one
        bodies = " ".join(str(call.get("body")) for call in received)
        assert "1 customers held back" in bodies
        for planted in (PLANTED_POSTAL_CODE, PLANTED_IIN, held_id):
            assert planted not in bodies
        assert {NON_GREEN, HELD_BACK, NO_SUCCESS} == set(names)
    finally:
        receiver.close()


async def test_a_replay_queued_while_the_sync_delivers_waits_for_it(
    prefect_server: PrefectServer,
    worker: Started,
    deployed: str,
    partner_token: str,
    api: None,
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client

    from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread

    state_dir = str(tmp_path / "state")
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
        replay = await client.read_deployment_by_name(REPLAY)
        # slow enough (36 requests of one customer, 0.5 s each) to queue a replay meanwhile
        with serve_stub_in_thread(StubFaults(latency=0.5), bearer_token=partner_token) as stub:
            sync_run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={
                    "extract": {"source": "data"},
                    "partner": {"api_url": stub.url, "batch_size": 1, "concurrency": 1},
                    "state": {"state_dir": state_dir},
                },
            )
            deadline = time.monotonic() + RUN_TIMEOUT
            while stub.counters.requests == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)  # the sync is delivering
            assert stub.counters.requests > 0, worker.tail()
            replay_run = await client.create_flow_run_from_deployment(
                replay.id, parameters={"api_url": stub.url, "state_dir": state_dir}
            )
            sent_when_queued = stub.counters.requests
            # While the sync runs, the replay is not started (the worker could take two).
            seen: set[str] = set()
            while True:
                current = await client.read_flow_run(sync_run.id)
                waiting = await client.read_flow_run(replay_run.id)
                if current.state is not None and current.state.is_final():
                    break
                assert waiting.state is not None
                seen.add(waiting.state.type.value)
                assert waiting.state.type.value in {"SCHEDULED", "PENDING"}, (
                    f"the replay is {waiting.state.name} while the sync runs"
                )
                await asyncio.sleep(0.3)
            finished_replay = await _wait_for_final_state(client, replay_run.id, worker)
        finished_sync = await client.read_flow_run(sync_run.id)
    assert finished_sync.state.is_completed(), finished_sync.state.message
    assert finished_replay.state.is_completed(), (
        f"{finished_replay.state.name}: {finished_replay.state.message}\n{worker.tail(80)}"
    )
    assert "SCHEDULED" in seen, (
        f"the sync ended before the replay was seen waiting ({sent_when_queued} of "
        f"{stub.counters.requests} requests sent when it was queued)"
    )
    assert finished_replay.start_time >= finished_sync.end_time
    assert all(customer.times == 1 for customer in stub.accepted.values())
