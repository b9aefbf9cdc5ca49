"""The Prefect automations that tell someone about a bad night.

``prefect deploy`` can declare *triggers* in ``prefect.yaml``, but a deployment trigger
only ever runs a deployment; it cannot send a notification. So the automations are created
by this module, once per Prefect server (again after a change; it replaces them by name):

    uv run --locked python -m customer_sync.flows.automations \\
        --block custom-webhook/customer-sync-alerts [--hours-without-success 26]

``--block`` names a notification block (``<block type slug>/<block name>``: a custom
webhook, Slack, Teams, e-mail, ...) that must exist on the server. Three automations:

``customer-sync: run ended non-green``
    a run of ``sync-customers`` or ``replay-dead-letters`` entered a FAILED (which includes
    ``Incomplete``), CRASHED or CANCELLED state; the message carries the state's message
    (the counts). A run Prefect retries enters ``AwaitingRetry`` instead: no notification
    until its last attempt fails.
``customer-sync: held back above threshold``
    the run's ``customer-sync.run.held-back-above-threshold`` event (the flow applies the
    threshold, ``CUSTOMER_SYNC_ALERT_HELD_BACK_SHARE``, default 1%).
``customer-sync: no successful run``
    proactive: no ``sync-customers`` run reached Completed within ``--hours-without-success``
    hours (default 26: a nightly run plus two hours of slack). Prefect evaluates it over a
    window that starts when the automation is created and again after each firing, so
    create it at the hour by which a good night must be over (e.g. 07:00) to fire at
    that hour.

Bodies name only the run, its state and its counts: no customer data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Final
from uuid import UUID

from prefect.automations import Automation
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from customer_sync.flows.events import HELD_BACK_ABOVE_THRESHOLD, RUN_EVENT_PREFIX

NON_GREEN: Final = "customer-sync: run ended non-green"
HELD_BACK: Final = "customer-sync: held back above threshold"
NO_SUCCESS: Final = "customer-sync: no successful run"
FLOWS: Final = ("sync-customers", "replay-dead-letters")
NON_GREEN_TYPES: Final = ["FAILED", "CRASHED", "CANCELLED"]


def non_green_run(block_document_id: UUID, flows: Sequence[str] = FLOWS) -> Automation:
    return Automation(
        name=NON_GREEN,
        description="A customer-sync flow run ended Failed, Incomplete, Crashed or Cancelled.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.*"},
            match={
                "prefect.resource.id": "prefect.flow-run.*",
                "prefect.state-type": NON_GREEN_TYPES,
            },
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(flows)},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="customer-sync: {{ flow_run.name }} ended {{ flow_run.state.name }}",
                body="Flow run {{ flow_run.name }} ({{ flow_run.id }}) ended "
                "{{ flow_run.state.name }}: {{ flow_run.state.message }}",
            )
        ],
    )


def held_back_above_threshold(block_document_id: UUID) -> Automation:
    return Automation(
        name=HELD_BACK,
        description="More customers were held back than the alert threshold allows.",
        trigger=EventTrigger(
            expect={HELD_BACK_ABOVE_THRESHOLD},
            match={"prefect.resource.id": f"{RUN_EVENT_PREFIX}.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="customer-sync: customers held back above the threshold",
                body="Run {{ event.resource.name }}: {{ event.payload.held_back }} of "
                "{{ event.payload.read }} customers held back (share "
                "{{ event.payload.held_back_share }}, threshold {{ event.payload.threshold }}); "
                "by reason: {{ event.payload.held_back_by_reason }}",
            )
        ],
    )


def no_successful_run(
    block_document_id: UUID, *, hours: float, flow: str = "sync-customers"
) -> Automation:
    return Automation(
        name=NO_SUCCESS,
        description=f"No {flow} run completed in {hours:g} hours.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": flow},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(hours=hours),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=f"customer-sync: no successful {flow} run",
                body=f"No {flow} run has completed in the last {hours:g} hours: the nightly "
                "delivery did not happen, or did not end green.",
            )
        ],
    )


def customer_sync_automations(
    block_document_id: UUID, *, hours_without_success: float = 26.0
) -> list[Automation]:
    """The three automations, not yet created (pure)."""
    return [
        non_green_run(block_document_id),
        held_back_above_threshold(block_document_id),
        no_successful_run(block_document_id, hours=hours_without_success),
    ]


async def replace_automations(automations: Sequence[Automation]) -> list[Automation]:
    """Create each automation, first deleting any of the same name (idempotent)."""
    from prefect.client.orchestration import get_client

    created: list[Automation] = []
    async with get_client() as client:
        for automation in automations:
            for existing in await client.read_automations_by_name(automation.name):
                await client.delete_automation(existing.id)
        for automation in automations:
            created.append(await automation.acreate())
    return created


async def block_document_id(block: str) -> UUID:
    """The id of the notification block ``<type slug>/<name>``."""
    from prefect.client.orchestration import get_client

    type_slug, _, name = block.partition("/")
    if not name:
        raise ValueError(f"--block must be <block type slug>/<block name>, not {block!r}")
    async with get_client() as client:
        document = await client.read_block_document_by_name(name, block_type_slug=type_slug)
    return document.id


async def amain(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m customer_sync.flows.automations",
        description="Create (or replace) customer-sync's Prefect automations.",
    )
    parser.add_argument(
        "--block", required=True, help="notification block: <block type slug>/<block name>"
    )
    parser.add_argument(
        "--hours-without-success",
        type=float,
        default=26.0,
        help="notify when no sync-customers run completed for this long (default 26)",
    )
    args = parser.parse_args(argv)
    try:
        block_id = await block_document_id(args.block)
    except Exception as error:
        print(f"customer-sync: notification block {args.block}: {error}", file=sys.stderr)
        return 2
    if args.hours_without_success <= 0:
        print("customer-sync: --hours-without-success must be positive", file=sys.stderr)
        return 2
    created = await replace_automations(
        customer_sync_automations(block_id, hours_without_success=args.hours_without_success)
    )
    for automation in created:
        print(f"created automation {automation.name!r} ({automation.id})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
