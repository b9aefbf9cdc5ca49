"""One partner budget for every run and shard: a Prefect global concurrency limit.

The partner sees the sum of all runs' requests. With a Prefect server that holds the
global concurrency limit ``partner-requests`` (``prefect gcl create partner-requests
--limit N``, docs/scale-out.md), a delivery **leases** ``min(concurrency, N)`` of its slots
for as long as it delivers and sends at most that many requests at once; the server keeps
the sum of every run's leases within N, across machines. A second run that finds the
slots taken waits for them (its delivery starts when another one ends or gives slots
back). The parent flow (``flows/parent.py``) gives each of its M shards ``N // M``, so
they all run at once.

Leased per delivery, not per request: a slot taken and given back around each POST costs
two calls to the Prefect server and a lease-renewal thread per request (measured in
``scripts/bench_scale_out.py --gcl-cost``), which at a partner latency of 50 ms and 16
requests in flight would be hundreds of calls a second to the server, each on the
request's path. A lease is renewed by Prefect in the background and expires on its own
if the run's process dies (``LEASE_SECONDS``), so a killed shard does not keep the
budget.

Without a Prefect server (a plain CLI run, ``PREFECT_API_URL`` unset), or when the server
has no such limit (or it is inactive), the run keeps its local ``--concurrency``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger(__name__)

PARTNER_REQUESTS_LIMIT = "partner-requests"
"""The name of the global concurrency limit that holds the partner budget."""
LEASE_SECONDS = 60.0
"""A dead run's slots come back after at most this long (Prefect renews a live lease)."""


def prefect_server_url() -> str | None:
    """The Prefect API this process talks to, or None in ephemeral mode (no server)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


async def partner_limit(name: str = PARTNER_REQUESTS_LIMIT) -> int | None:
    """The budget held by the server's global concurrency limit ``name``, or None (no
    server, no such limit, an inactive one, or a server that cannot be asked)."""
    if prefect_server_url() is None:
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None
    except Exception as error:  # a server that does not answer: the local limit holds
        log.warning(
            "Could not read the partner budget %r from the Prefect server (%s); using the "
            "run's own concurrency",
            name,
            type(error).__name__,
        )
        return None
    return limit.limit if limit.active else None


@asynccontextmanager
async def partner_budget(
    concurrency: int, name: str = PARTNER_REQUESTS_LIMIT
) -> AsyncIterator[int]:
    """The requests this delivery may have in flight, leased from the server's budget
    while the block runs; ``concurrency`` when there is no budget to share."""
    budget = await partner_limit(name)
    if budget is None or budget < 1:
        yield concurrency
        return
    from prefect.concurrency.asyncio import concurrency as lease_slots

    slots = max(1, min(concurrency, budget))
    log.info(
        "Partner budget %r: leasing %d of its %d requests in flight (asked for %d)",
        name,
        slots,
        budget,
        concurrency,
    )
    async with lease_slots(name, occupy=slots, lease_duration=LEASE_SECONDS, strict=True):
        yield slots
