"""The Prefect UI tells the same story whatever the extract's size: a small run (one
chunk, prepared here) and a chunked one (split on disk, worker processes) have task runs
of the same names, each named for what it does. Under a real Prefect engine and server,
over real HTTP to the stand-in partner."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.run.options import SyncOptions, run_hooks
from tests.flow_support import FAST_RETRIES, write_synthetic

pytestmark = pytest.mark.usefixtures("prefect_harness")

EVERY_PATH = {"read-extract", "validate-and-nest", "plan-changes", "deliver-batches"}
_NUMBERED = re.compile(r"-\d{5}$")


def _run(options: SyncOptions) -> Any:
    from customer_sync.flows.sync import sync_customers

    with run_hooks(retry_policy=FAST_RETRIES, progress=False):
        return asyncio.run(sync_customers(return_state=True, **options.groups()))


def _task_names(flow_run_id: Any, expected: set[str]) -> tuple[set[str], int]:
    """The task names of a flow run's task runs (their run names without the number), once
    every expected one was recorded (task runs reach the server as events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    deadline = time.monotonic() + 60
    while True:
        runs = asyncio.run(read())
        names = {_NUMBERED.sub("", run.name) for run in runs}
        if expected <= names or time.monotonic() > deadline:
            return names, len(runs)
        time.sleep(0.5)


def test_a_small_and_a_chunked_run_have_the_same_task_names(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 400)
    with serve_stub_in_thread() as stub:
        small = _run(
            SyncOptions(source=str(source), api_url=stub.url, state_dir=str(tmp_path / "small"))
        )
        chunked = _run(
            SyncOptions(
                source=str(source),
                api_url=stub.url,
                state_dir=str(tmp_path / "chunked"),
                chunk_customers=100,
            )
        )
        assert len(stub.accepted) == 400
    assert small.is_completed() and chunked.is_completed()
    assert small.result().customers_sent == 400 and chunked.result().customers_sent == 400

    small_names, small_runs = _task_names(small.state_details.flow_run_id, EVERY_PATH)
    chunked_names, chunked_runs = _task_names(chunked.state_details.flow_run_id, EVERY_PATH)
    assert small_names == EVERY_PATH
    assert chunked_names == small_names
    assert chunked_runs > small_runs  # the chunked run did it chunk by chunk
