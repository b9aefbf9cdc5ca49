"""The flow-level retry policy: whole runs are retried only for a partner outage.

Per-batch retries (adapters.delivery) absorb blips of seconds. When the partner is down for
longer, customers are still failing after their batch retries; a scheduled run then fails
with ``PartnerUnavailable`` and Prefect retries the *whole run* later (the flow's
``retries``/``retry_delay_seconds``). Thanks to the ledger a retried run sends only what
was not acknowledged. Nothing else is worth a retry: a tripped guard, unusable input, bad
configuration, or customers the partner rejected would fail the same way again, so those
switch the remaining retries off before the run fails.
"""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from customer_sync.adapters.auth import PartnerAuthError
from customer_sync.schemas.errors import CustomerSyncError

log = logging.getLogger(__name__)

RUN_RETRIES = 2
RUN_RETRY_DELAY_SECONDS = 900


class PartnerUnavailable(CustomerSyncError):
    """Customers still failed after their batch retries: the partner looks unavailable."""

    exit_status = 1


def worth_a_run_retry(error: BaseException, *, retry_outage: bool) -> bool:
    """Only partner outages, and only when the caller asked for run-level retries."""
    if not retry_outage:
        return False
    if isinstance(error, PartnerAuthError):
        return error.transient
    return isinstance(error, PartnerUnavailable)


async def stop_run_retries() -> None:
    """Tell the Prefect API this flow run must not be retried (a no-op outside a run)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    if not run.empirical_policy.retries:
        return
    policy = run.empirical_policy.model_copy(update={"retries": 0})
    try:
        async with get_client() as client:
            await client.update_flow_run(run.id, empirical_policy=policy)
    except Exception as error:  # the run still fails; it may just be retried in vain
        log.warning("Could not switch off flow-run retries: %s", type(error).__name__)
