"""Pieces of ``bench_scale_out.py --flow-runs``: prefect.yaml deployed to the benchmark's
Prefect server, two process workers, the partner budget as a global concurrency limit,
and one sharded deployment run timed from its creation to its final state.

Worker A serves the ``parents`` queue and the default one (two runs at a time), worker B
the default queue (one at a time): the parent goes to ``parents``, so its two shards run
one on each worker (as in tests/test_sharded_deployment.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POOL = "customer-sync"
PARENT = "sync-customers-sharded/sync-customers-sharded"
BUDGET = "partner-requests"


def _prefect(env: dict[str, str], *arguments: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *arguments],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"prefect {' '.join(arguments)} failed: {done.stdout}{done.stderr}")


@contextmanager
def two_workers(env: dict[str, str], logs: Path) -> Iterator[None]:
    """The pool, the ``parents`` queue, both deployments, and two process workers."""
    _prefect(env, "work-pool", "create", POOL, "--type", "process")
    _prefect(env, "work-queue", "create", "parents", "--pool", POOL)
    _prefect(env, "--no-prompt", "deploy", "--name", "sync-customers-sharded",
             "--name", "sync-customers-shard")  # fmt: skip
    start = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
             "--type", "process"]  # fmt: skip
    commands = {
        "worker-a": [*start, "--limit", "2", "--work-queue", "default", "--work-queue",
                     "parents", "--name", "worker-a"],
        "worker-b": [*start, "--limit", "1", "--work-queue", "default", "--name", "worker-b"],
    }  # fmt: skip
    workers = []
    logs.mkdir(parents=True, exist_ok=True)
    for name, command in commands.items():
        with (logs / f"{name}.log").open("wb") as sink:
            workers.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
    try:
        yield
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def set_budget(env: dict[str, str], limit: int) -> None:
    """``prefect gcl create partner-requests --limit N`` (as docs/scale-out.md says)."""
    _prefect(env, "gcl", "create", BUDGET, "--limit", str(limit))


async def _sharded_run(parameters: dict[str, Any], timeout: float) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(PARENT)
        flow_run = await client.create_flow_run_from_deployment(
            deployment.id, parameters=parameters, work_queue_name="parents"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = await client.read_flow_run(flow_run.id)
            if run.state is not None and run.state.is_final():
                return run
            await asyncio.sleep(0.5)
    raise SystemExit("the sharded run did not finish in time")


def sharded_run(
    env: dict[str, str], source: Path, url: str, state: str, report: Path, budget: int
) -> tuple[float, dict[str, Any]]:
    """One parent deployment run of 2 shards; its wall time (created to final) and report."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    parameters = {
        "extract": {"source": str(source)},
        "partner": {"api_url": url, "concurrency": budget},
        "state": {"state_dir": state, "report": str(report)},
        "shards": 2,
    }
    started = time.perf_counter()
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        run = asyncio.run(_sharded_run(parameters, timeout=6 * 3600))
    wall = time.perf_counter() - started
    if not run.state.is_completed():
        raise SystemExit(f"the sharded run ended {run.state.type.value}: {run.state.message}")
    return wall, json.loads(report.read_text(encoding="utf-8"))


async def _lease_cost(name: str, requests: int, at_once: int) -> list[float]:
    from prefect.concurrency.asyncio import concurrency

    seconds: list[float] = []
    limiter = asyncio.Semaphore(at_once)

    async def one() -> None:
        async with limiter:
            started = time.perf_counter()
            async with concurrency(name, occupy=1, strict=True):
                pass
            seconds.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(requests)))
    return seconds


def lease_cost(env: dict[str, str], requests: int, at_once: int) -> tuple[list[float], float]:
    """What taking and giving back one slot of the budget costs, per request as the
    per-request design would pay it: each duration, and the wall time of all of them."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        started = time.perf_counter()
        seconds = asyncio.run(_lease_cost(BUDGET, requests, at_once))
        return seconds, time.perf_counter() - started
