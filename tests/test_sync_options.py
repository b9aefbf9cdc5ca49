"""SyncOptions: one typed, bounded, described object, and the deployed flow's parameters
are its groups, so a Prefect server refuses a run that breaks a bound at submission."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any

import pytest

from customer_sync.run.options import GROUPS, SyncOptions, current_hooks, run_hooks
from customer_sync.schemas.errors import ConfigError
from tests.flow_support import FAST_RETRIES


def test_every_field_is_described_and_belongs_to_exactly_one_group() -> None:
    grouped = [name for group in GROUPS.values() for name in group.model_fields]
    assert sorted(grouped) == sorted(SyncOptions.model_fields)
    assert len(grouped) == len(set(grouped)), "a field in two groups"
    for name, field in SyncOptions.model_fields.items():
        assert field.description, f"{name} has no description"


def test_the_flow_takes_the_groups_and_nothing_else() -> None:
    from customer_sync.flows.replay import replay_dead_letters
    from customer_sync.flows.sync import sync_customers

    assert list(inspect.signature(sync_customers.fn).parameters) == list(GROUPS)
    for flow in (sync_customers, replay_dead_letters):
        names = set(inspect.signature(flow.fn).parameters)
        assert not names & {"retry_policy", "progress"}, "a test hook in the deployed signature"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"batch_size": 51}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_held_back_share": 1.5}, "max_held_back_share"),
        ({"max_update_share": -0.1}, "max_update_share"),
        ({"max_absent_share": 2.0}, "max_absent_share"),
        ({"acknowledgement_retention_days": 0}, "acknowledgement_retention_days"),
        ({"chunk_customers": 0}, "chunk_customers"),
        ({"wait": -1.0}, "wait"),
        ({"mode": "delete"}, "mode"),
        ({"shard": "half"}, "shard must be written N/M"),
        ({"shard": "3/2"}, "shard must be N/M with 1 <= N <= M"),
        ({"batch_sise": 20}, "batch_sise"),
    ],
)
def test_a_value_out_of_bounds_is_one_config_error_line(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=field) as refused:
        SyncOptions.build(**changes)
    assert "\n" not in str(refused.value)


def test_a_refusal_never_repeats_the_value() -> None:
    with pytest.raises(ConfigError) as refused:
        SyncOptions.build(api_url="https://u:hunter2@partner.example", batch_size=99)
    assert "hunter2" not in str(refused.value) and "99" not in str(refused.value)


def test_groups_round_trip_to_the_same_options() -> None:
    options = SyncOptions(
        source="in/", batch_size=20, shard="2/3", max_update_share=0.2, rename={"a": "b"}
    )
    assert SyncOptions.from_groups(**options.groups()) == options
    as_json = {name: group.model_dump(mode="json") for name, group in options.groups().items()}
    assert SyncOptions.from_groups(**as_json) == options
    assert options.shard == "2/3"  # scale's parent flow sets it per shard


def test_hooks_hold_only_inside_their_block() -> None:
    assert current_hooks().retry_policy is None
    with run_hooks(retry_policy=FAST_RETRIES, progress=False):
        assert current_hooks().retry_policy is FAST_RETRIES
        assert current_hooks().progress is False
    assert current_hooks().retry_policy is None


@pytest.mark.usefixtures("prefect_harness")
def test_the_prefect_server_refuses_batch_size_51_at_submission() -> None:
    """A deployment created from the flow, on a real Prefect server: the parameter schema
    comes from the groups, so 51 is refused when the run is created (nothing scheduled),
    50 is accepted."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError

    from customer_sync.flows.sync import sync_customers

    async def scenario() -> None:
        name = f"bounds-{uuid.uuid4().hex[:8]}"
        deployment = await sync_customers.ato_deployment(name=name)
        deployment_id = await deployment.apply()
        full_name = f"sync-customers/{name}"
        async with get_client() as client:
            try:
                with pytest.raises(PrefectHTTPStatusError) as refused:
                    await run_deployment(
                        full_name,
                        parameters={"partner": {"batch_size": 51}},
                        timeout=0,
                        client=client,
                    )
                assert refused.value.response.status_code in (409, 422)
                assert "batch_size" in refused.value.response.text
                runs = await client.read_flow_runs()
                assert not [r for r in runs if r.deployment_id == deployment_id]

                accepted = await run_deployment(
                    full_name,
                    parameters={"partner": {"batch_size": 50}, "chunks": {"shard": "1/2"}},
                    timeout=0,
                    client=client,
                )
                assert accepted.parameters["partner"] == {"batch_size": 50}
                await client.delete_flow_run(accepted.id)
            finally:
                await client.delete_deployment(deployment_id)

    asyncio.run(scenario())
