"""The sharded run for real: prefect.yaml's `sync-customers-sharded` deployment on a Prefect
server, its shards as child flow runs on two process workers, a PostgreSQL ledger.

The parent's deployment run must deliver every customer of a generated extract exactly
once (counted per customer id by the stand-in partner), its child runs must have run on
both workers (Prefect's own log line "Worker '<name>' submitting flow run '<id>'" of each
child run says which), its report must add up to its shards', and a rerun sends nothing.

Worker A serves the `parents` queue and the default one, two runs at a time; worker B the
default queue, one run at a time. The parent is sent to `parents`, so it runs on A, and
its two shards, released together, fill the one free place on each worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_deployment as _deployment
from tests.flow_support import read_table, write_synthetic
from tests.test_deployment import PrefectServer, Started, _prefect, _run_cli, _started

# the real-server fixtures of the nightly deployment's test
loopback_only = _deployment.loopback_only
prefect_server = _deployment.prefect_server

pytestmark = [pytest.mark.deployment, pytest.mark.slow, pytest.mark.timeout(900)]

POOL = "customer-sync"
PARENT = "sync-customers-sharded/sync-customers-sharded"
PARTNER_TOKEN = "sharded-test-partner-token"
CUSTOMERS = 600
RUN_TIMEOUT = 600.0


@pytest.fixture
def two_workers(
    prefect_server: PrefectServer, postgres_server: Any, tmp_path: Path
) -> Iterator[tuple[Started, Started]]:
    env = prefect_server.env
    _run_cli(env, "work-pool", "create", POOL, "--type", "process")
    _run_cli(env, "work-queue", "create", "parents", "--pool", POOL)
    worker_env = {
        **env,
        "CUSTOMER_SYNC_API_TOKEN": PARTNER_TOKEN,  # the worker's environment (docs/deploy.md)
        "CUSTOMER_SYNC_WORK_DIR": str(tmp_path / "work"),
    }
    start = ("worker", "start", "--pool", POOL, "--type", "process")
    a = _prefect(*start, "--limit", "2", "--work-queue", "default", "--work-queue", "parents",
                 "--name", "worker-a")  # fmt: skip
    b = _prefect(*start, "--limit", "1", "--work-queue", "default", "--name", "worker-b")
    with (
        _started("worker-a", a, worker_env, prefect_server.logs) as first,
        _started("worker-b", b, worker_env, prefect_server.logs) as second,
    ):
        _run_cli(env, "--no-prompt", "deploy", "--name", "sync-customers-sharded",
                 "--name", "sync-customers-shard")  # fmt: skip
        yield first, second


async def _final(client: Any, flow_run_id: Any, workers: tuple[Started, ...]) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"{worker.name} exited\n{worker.tail()}")
        await asyncio.sleep(1.0)
    pytest.fail("the sharded run did not finish in time\n" + "\n".join(w.tail() for w in workers))


async def _worker_of(client: Any, flow_run_id: str) -> str | None:
    """The worker that ran a flow run, from the line Prefect's worker logs to that run."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        for line in await client.read_logs(log_filter=log_filter):
            if "submitting flow run" in line.message and line.message.startswith("Worker '"):
                return str(line.message.split("'")[1])
        await asyncio.sleep(0.5)
    return None


async def _run_parent(client: Any, parameters: dict[str, Any], workers: Any) -> Any:
    deployment = await client.read_deployment_by_name(PARENT)
    flow_run = await client.create_flow_run_from_deployment(
        deployment.id, parameters=parameters, work_queue_name="parents"
    )
    finished = await _final(client, flow_run.id, workers)
    assert finished.state.is_completed(), (
        f"the sharded run ended {finished.state.type.value}: {finished.state.message}\n"
        + "\n".join(w.tail(80) for w in workers)
    )
    return finished


async def test_a_sharded_deployment_run_delivers_each_customer_once_on_both_workers(
    prefect_server: PrefectServer,
    two_workers: tuple[Started, Started],
    postgres_server: Any,
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from customer_sync.devtools.stub_server import serve_stub_in_thread

    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    extract_ids = set(read_table(source, "customers")["sourceCustomerId"])
    ledger_url = postgres_server.database()

    def parameters(api_url: str, report: Path) -> dict[str, Any]:
        return {
            "extract": {"source": str(source)},
            "partner": {"api_url": api_url, "concurrency": 4},
            "state": {"state_dir": ledger_url, "report": str(report)},
            "run": {"retry_outage": False},
            "chunks": {"chunk_customers": 100},
            "shards": 2,
        }

    with (
        serve_stub_in_thread(bearer_token=PARTNER_TOKEN) as stub,
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
    ):
        async with get_client() as client:
            first = await _run_parent(
                client,
                parameters(stub.url, tmp_path / "first.json"),
                two_workers,
            )
            report = json.loads((tmp_path / "first.json").read_text(encoding="utf-8"))

            # every customer of the extract, exactly once, at the partner
            assert set(stub.accepted) == extract_ids
            assert all(customer.times == 1 for customer in stub.accepted.values())

            # one report that adds up to its shards'
            assert report["status"] == "completed" and report["reconciles"]
            shard_runs = report["shard_runs"]
            assert sorted(run["shard"] for run in shard_runs) == ["1/2", "2/2"]
            assert all(run["state"] == "COMPLETED" for run in shard_runs)
            for key in ("customers_read", "customers_sent", "customers_held_back"):
                assert report["totals"][key] == sum(run["counts"][key] for run in shard_runs)
            assert report["planned"]["customers_read"] == CUSTOMERS
            assert report["totals"]["customers_read"] == CUSTOMERS
            assert report["totals"]["customers_sent"] == CUSTOMERS
            assert all(run["counts"]["customers_sent"] > 0 for run in shard_runs)

            # the shards ran on both workers
            workers = {await _worker_of(client, run["flow_run_id"]) for run in shard_runs}
            assert workers == {"worker-a", "worker-b"}, workers
            for run in shard_runs:  # and as child runs of the parent
                child = await client.read_flow_run(run["flow_run_id"])
                assert child.parent_task_run_id is not None
                parent_task = await client.read_task_run(child.parent_task_run_id)
                assert parent_task.flow_run_id == first.id

            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[first.id]))
            )
            summary = next(a for a in artifacts if a.key == "sync-sharded-summary")
            assert "counts reconcile" in str(summary.data)

            # a rerun sends nothing
            requests_before = stub.counters.requests
            await _run_parent(
                client,
                parameters(stub.url, tmp_path / "rerun.json"),
                two_workers,
            )
            rerun = json.loads((tmp_path / "rerun.json").read_text(encoding="utf-8"))
            assert stub.counters.requests == requests_before
            assert rerun["totals"]["customers_sent"] == 0
            assert rerun["totals"]["customers_unchanged"] == CUSTOMERS
            assert rerun["reconciles"]
    postgres_server.drop(ledger_url)
