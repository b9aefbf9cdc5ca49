"""The nightly deployment, for real: prefect.yaml deployed to a Prefect server, run by a worker.

What a user does, in the order they do it: start a Prefect server, create the `process`
work pool, `prefect deploy` from the checkout, start a worker, keep the partner token in
a Secret block, run the deployment. The partner is the stand-in server on 127.0.0.1; the
run is checked through Prefect's API (state, artifacts, logs) and against what the
stand-in partner received.

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
def _started(name: str, command: list[str], env: dict[str, str], logs: Path) -> Iterator[Started]:
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
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


def _run_cli(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        _prefect(*arguments),
        cwd=REPO,
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


# --- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    env: dict[str, str]
    """The environment of every Prefect command of the test (server, CLI, worker)."""
    logs: Path
    process: Started


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients of this process (Prefect's httpx, urllib) talk to 127.0.0.1 directly."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def prefect_server(tmp_path: Path, loopback_only: None) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, with its own PREFECT_HOME."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    home.mkdir()
    logs = tmp_path / "logs"
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
    with _started("server", command, env, logs) as server:
        _wait_for_health(api_url, server)
        yield PrefectServer(api_url, env, logs, server)


@pytest.fixture
def work_pool(prefect_server: PrefectServer) -> str:
    """The `process` work pool, created as docs/deploy.md says."""
    _run_cli(prefect_server.env, "work-pool", "create", POOL, "--type", "process")
    return POOL


@pytest.fixture
def worker(prefect_server: PrefectServer, work_pool: str) -> Iterator[Started]:
    """`prefect worker start` on the pool, one flow run at a time, polling every second."""
    command = _prefect(
        "worker", "start", "--pool", work_pool, "--type", "process", "--limit", "1",
        "--name", "deployment-test-worker",
    )  # fmt: skip
    with _started("worker", command, prefect_server.env, prefect_server.logs) as started:
        yield started


@pytest.fixture
def deployed(prefect_server: PrefectServer, work_pool: str, worker: Started) -> str:
    """prefect.yaml deployed with the real CLI, without prompts (the worker boots meanwhile)."""
    return _run_cli(prefect_server.env, "--no-prompt", "deploy", "--name", "sync-customers")


@pytest.fixture
def stub() -> Iterator[Any]:
    """The stand-in partner, accepting only the bearer token kept in the Secret block."""
    from customer_sync.devtools.stub_server import serve_stub_in_thread

    with serve_stub_in_thread(bearer_token=PARTNER_TOKEN) as partner:
        yield partner


# --- the test -------------------------------------------------------------------------------


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


async def test_the_nightly_deployment_runs_on_a_worker_and_delivers_every_customer(
    prefect_server: PrefectServer,
    worker: Started,
    deployed: str,
    stub: Any,
    tmp_path: Path,
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from customer_sync.flows.secrets import apartner_token_from_block, partner_token_from_block

    state_dir = tmp_path / "state"
    config = yaml.safe_load(PREFECT_FILE.read_text(encoding="utf-8"))
    declared = next(d for d in config["deployments"] if d["name"] == "sync-customers")

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        # The operator keeps the partner token in a Secret block (docs/deploy.md); the
        # helper the flow reads it with answers None while there is none.
        assert await apartner_token_from_block(TOKEN_BLOCK) is None
        await Secret(value=PARTNER_TOKEN).asave(TOKEN_BLOCK, overwrite=True)
        assert await apartner_token_from_block(TOKEN_BLOCK) == PARTNER_TOKEN
        assert await asyncio.to_thread(partner_token_from_block, TOKEN_BLOCK) == PARTNER_TOKEN
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)

            # What prefect.yaml declares is what the server holds.
            assert deployment.entrypoint == declared["entrypoint"]
            assert deployment.work_pool_name == POOL
            assert deployment.parameters == declared["parameters"]
            assert deployment.job_variables == declared["work_pool"]["job_variables"]
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ], "the pull step must point the worker at the checkout prefect deploy ran in"
            assert deployment.global_concurrency_limit is not None
            assert deployment.global_concurrency_limit.limit == 1
            [schedule] = deployment.schedules
            declared_schedule = declared["schedules"][0]
            assert schedule.active
            assert schedule.schedule.cron == declared_schedule["cron"]
            assert schedule.schedule.timezone == declared_schedule["timezone"]

            flow_run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={
                    # Relative on purpose: it resolves only if the pull step moved the run
                    # into the checkout.
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
            assert not any(PARTNER_TOKEN in log.message for log in logs)

    [report_path] = state_dir.glob("runs/*/report.json")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    expected = _sample_customer_ids() - _held_back_ids(report.get("rejects"))
    assert expected, "the sample extract has no valid customer"
    assert report["reconciles"]
    assert report["customers_failed"] == 0
    assert report["customers_sent"] == len(expected)
    assert set(stub.accepted) == expected
    assert all(customer.times == 1 for customer in stub.accepted.values())
    # The partner token came from the Secret block: the stand-in accepts only that bearer,
    # and the flow never fell back to the session-token login.
    assert stub.counters.unauthorized == 0
    assert stub.counters.sessions_started == 0
