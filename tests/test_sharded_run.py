"""The sharded run's planning phase, its failures, and its report (flows/parent.py,
run/sharded_report.py), under the Prefect test harness and the stand-in partner.

The full run on two workers is tests/test_sharded_deployment.py; here: a broken export is
stopped before any shard starts, a shard that cannot start fails the parent with counts,
and the report's sums.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.run.sharded_report import (
    ShardedResult,
    ShardRun,
    incomplete_message,
    summary_markdown,
)
from customer_sync.schemas.errors import GuardTripped
from tests.flow_support import read_table, write_synthetic, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _run_parent(shards: int = 2, deployment: str | None = None, **options: Any) -> Any:
    """The parent flow, called with the option groups built from flat ``SyncOptions``."""
    from customer_sync.flows.parent import SHARD_DEPLOYMENT, sync_customers_sharded
    from customer_sync.run.options import SyncOptions

    groups = SyncOptions.build(**options).groups()
    return asyncio.run(
        sync_customers_sharded(**groups, shards=shards, deployment=deployment or SHARD_DEPLOYMENT)
    )


async def _flow_runs_named(prefix: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=prefix))
        )
    return list(runs)


def test_a_broken_export_is_stopped_before_any_shard_starts(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 200)
    customers = read_table(source, "customers")
    customers.loc[:59, "country"] = "XX"  # 30% of the customers invalid
    write_table(source, "customers", customers)
    report = tmp_path / "report.json"
    shards_before = asyncio.run(_flow_runs_named("shard-"))
    with serve_stub_in_thread() as stub, pytest.raises(GuardTripped, match="held back"):
        _run_parent(
            source=str(source), api_url=stub.url, state_dir=str(tmp_path / "state"),
            chunk_customers=50, report=str(report),
        )  # fmt: skip
    assert stub.counters.requests == 0  # nothing went out
    assert asyncio.run(_flow_runs_named("shard-")) == shards_before  # no shard was started
    stopped = json.loads(report.read_text(encoding="utf-8"))
    assert stopped["status"] == "stopped" and "held back" in stopped["stopped"]
    assert stopped["planned"]["customers_read"] == 200
    assert stopped["planned"]["customers_held_back"] == 60
    assert stopped["shard_runs"] == []
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    assert not list((tmp_path / "state").rglob("spool.arrow"))  # the plan's spool is gone


def test_shards_that_cannot_start_fail_the_parent_with_counts(tmp_path: Path) -> None:
    from customer_sync.flows.parent import ShardsIncomplete

    source = write_synthetic(tmp_path / "in", 120)
    report = tmp_path / "report.json"
    with (
        serve_stub_in_thread() as stub,
        pytest.raises(ShardsIncomplete, match=r"2 of 2 shards did not complete.*0 of 120"),
    ):
        _run_parent(
            source=str(source), api_url=stub.url, state_dir=str(tmp_path / "state"),
            deployment="sync-customers/no-such-deployment", report=str(report),
        )  # fmt: skip
    assert stub.counters.requests == 0
    failed = json.loads(report.read_text(encoding="utf-8"))
    assert failed["status"] == "failed" and not failed["reconciles"]
    assert [run["state"] for run in failed["shard_runs"]] == ["NOT_STARTED"] * 2


def test_each_shard_gets_the_run_options_with_its_shard_and_no_report() -> None:
    from customer_sync.flows.parent import shard_parameters
    from customer_sync.run.options import GROUPS, SyncOptions

    options = SyncOptions.build(
        source="/landing", api_url="https://partner.example", state_dir="/state",
        report="/reports/sharded.json", max_held_back_share=0.2, chunk_customers=1000,
    )  # fmt: skip
    second = shard_parameters(options, 2, 3, concurrency=5)
    assert set(second) == set(GROUPS)
    assert second["chunks"]["shard"] == "2/3" and second["chunks"]["chunk_customers"] == 1000
    assert second["partner"]["concurrency"] == 5
    assert second["state"]["report"] is None and second["state"]["state_dir"] == "/state"
    assert second["guards"]["max_held_back_share"] == 0.2
    # what the server will accept: the groups validate as sync-customers' parameters
    rebuilt = SyncOptions.from_groups(**second)
    assert rebuilt.shard == "2/3" and rebuilt.source == "/landing"


def _shard(shard: str, state: str = "COMPLETED", **counts: int) -> ShardRun:
    return ShardRun(shard=shard, flow_run_id=f"id-{shard}", state=state, counts=counts)


def test_the_report_adds_up_the_shards_and_checks_them_against_the_plan() -> None:
    result = ShardedResult(shards=2, planned={"customers_read": 10, "customers_planned": 8})
    result.shard_runs = [
        _shard("1/2", customers_read=6, customers_held_back=1, customers_sent=5),
        _shard("2/2", customers_read=4, customers_held_back=1, customers_sent=2,
               customers_failed=1),
    ]  # fmt: skip
    assert result.totals["customers_read"] == 10
    assert result.totals["customers_sent"] == 7
    assert result.reconciles and result.status == "partial"
    assert "counts reconcile" in summary_markdown(result)

    result.planned["customers_read"] = 11  # a customer the shards did not account for
    assert not result.reconciles
    assert "do not reconcile" in summary_markdown(result)


def test_a_shard_not_completed_fails_the_report_and_says_which() -> None:
    result = ShardedResult(shards=2, planned={"customers_read": 10, "customers_planned": 10})
    result.shard_runs = [
        _shard("1/2", customers_read=5, customers_sent=5),
        ShardRun("2/2", "id-2", "CRASHED", message="Flow run infrastructure exited"),
    ]
    assert result.status == "failed" and not result.reconciles
    message = incomplete_message(result)
    assert message.startswith("1 of 2 shards did not complete: shard 2/2 crashed")
    assert "5 of 10 planned customers sent" in message
