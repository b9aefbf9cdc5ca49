"""Delivery overhead against plain aiohttp, measured in one run against the stand-in server.

The stand-in server runs in a separate process (no GIL shared with the client). For each of
``--repeats`` rounds, the same N batches of 50 customers (~20 KB bodies) are posted
(a) by a minimal plain-aiohttp loop and (b) through ``adapters.delivery.deliver_batches``,
with the same concurrency; medians are printed with the ratio (b)/(a). Then the
latency-bound check: with a partner latency L and concurrency C, customers/s against
the bound C * 50 / L.

    uv run --locked python scripts/bench_delivery.py [--batches 20000] [--concurrency 16]
        [--latency 0] [--repeats 3] [--validate] [--bound-latency 0.05]
        [--bound-concurrency 16] [--bound-batches 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from customer_sync.adapters.delivery import RetryPolicy, deliver_batches
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_server import RemoteStub, StubFaults, serve_stub_in_subprocess
from customer_sync.schemas import contract
from customer_sync.schemas.records import Batch

POOL = 64  # distinct batches of documents, cycled (memory stays flat at any N)
BATCH = contract.MAX_CUSTOMERS_PER_REQUEST


def _customer(n: int) -> dict[str, Any]:
    customer_id = f"CUST{n:09d}"
    accounts = []
    # ~470 bytes a customer on average (~23 KB a batch): one in three holds an account
    # with a card (~780 bytes), the others none yet (~320 bytes).
    for a in range(1 if n % 3 == 0 else 0):
        account_id = f"{customer_id}-A{a}"
        accounts.append(
            {
                "sourceAccountId": account_id,
                "sourceCustomerIds": [customer_id],
                "primarySourceCustomerId": customer_id,
                "status": "OPEN",
                "type": "CRD" if a == 0 else "DDA",
                "sourcePortfolioId": "PF-0001",
                "accountOpenDate": "2019-05-01T00:00:00Z",
                "accountCloseDate": None,
                "cards": [
                    {
                        "sourceAccountId": account_id,
                        "sourceCustomerId": customer_id,
                        "last4": f"{(n * 7 + a) % 10000:04d}",
                        "iin": "412345",
                        "cardType": "CREDIT" if a == 0 else "DEBIT",
                        "status": "OPEN",
                        "networkIdentifier": 4,
                        "openDate": "2019-05-01T00:00:00Z",
                        "closeDate": None,
                    }
                ],
            }
        )
    return {
        "sourceCustomerId": customer_id,
        "organizationId": "50004",
        "postalCode": f"{n % 100000:05d}",
        "country": "US",
        "customerCreationDate": "2018-01-01T00:00:00Z",
        "enrollmentStartDate": "2018-01-01T00:00:00Z",
        "enrollmentEndDate": None,
        "enrollmentOptInStatus": "ACTIVE",
        "alertOptInStatus": ["ALL"],
        "targetingIndicator": "TARGET",
        "accounts": accounts,
    }


@dataclass(frozen=True)
class Workload:
    ids: list[tuple[str, ...]]
    documents: list[tuple[bytes, ...]]
    bodies: list[bytes]

    @classmethod
    def build(cls) -> Workload:
        ids, documents, bodies = [], [], []
        for b in range(POOL):
            customers = [_customer(b * BATCH + i) for i in range(BATCH)]
            ids.append(tuple(c["sourceCustomerId"] for c in customers))
            documents.append(tuple(orjson.dumps(c) for c in customers))
            bodies.append(orjson.dumps({"customers": customers}))
        return cls(ids, documents, bodies)

    def batches(self, count: int, run: str) -> Iterator[Batch]:
        for n in range(count):
            slot = n % POOL
            yield Batch(f"{run}-{n:07d}", "POST", self.ids[slot], self.documents[slot])


async def _token(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(
        url + contract.START_SESSION_PATH,
        data=b'{"scopes":["api:institution"]}',
        headers={"Content-Type": "application/json"},
    ) as answer:
        return str(orjson.loads(await answer.read())["sessionToken"])


async def plain_aiohttp(url: str, work: Workload, count: int, concurrency: int) -> None:
    """The baseline: minimal code, one session, C workers, no retries."""
    target = url + contract.CUSTOMERS_PATH
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        headers = {
            "Content-Type": "application/json",
            contract.SESSION_TOKEN_HEADER: await _token(session, url),
        }
        numbers = iter(range(count))

        async def worker() -> None:
            for n in numbers:
                async with session.post(target, data=work.bodies[n % POOL], headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"baseline got HTTP {r.status}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def through_delivery(url: str, work: Workload, count: int, concurrency: int) -> None:
    settings = PartnerSettings(api_url=url, api_token=None, max_connections=max(64, concurrency))
    async with PartnerClient(settings) as client:
        outcomes = await deliver_batches(
            client,
            work.batches(count, f"bench{time.monotonic_ns()}"),
            concurrency=concurrency,
            policy=RetryPolicy(),
            keep_outcomes=False,
            on_outcome=_require_acknowledged,
        )
    assert outcomes == []


def _require_acknowledged(outcome: Any) -> None:
    if outcome.status != "acknowledged" or outcome.attempts != 1:
        raise RuntimeError(f"batch {outcome.batch_id}: {outcome.status} ({outcome.error})")


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def measure(
    stub: RemoteStub,
    run: Callable[[], Coroutine[Any, Any, None]],
    count: int,
) -> Timing:
    before = stub.stats()
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    after = stub.stats()
    sent = after["customers_accepted"] - before["customers_accepted"]
    if sent != count * BATCH or after["max_customers_per_request"] > BATCH:
        raise RuntimeError(f"the server accepted {sent} customers, expected {count * BATCH}")
    return timing


def compare(args: argparse.Namespace, work: Workload) -> None:
    faults = StubFaults(latency=args.latency)
    n, c = args.batches, args.concurrency
    size = statistics.mean(map(len, work.bodies)) / 1024
    print(
        f"\n(1) overhead: {n:,} batches of {BATCH} (~{size:.1f} KB), concurrency {c}, "
        f"latency {args.latency * 1000:.0f} ms, "
        f"server validation {'on' if args.validate else 'off'}, {args.repeats} repeats"
    )
    plain: list[Timing] = []
    ours: list[Timing] = []
    with serve_stub_in_subprocess(faults, validate=args.validate) as stub:
        measure(stub, lambda: plain_aiohttp(stub.url, work, min(n, 500), c), min(n, 500))  # warm
        for repeat in range(args.repeats):
            order = [("plain", plain_aiohttp, plain), ("ours", through_delivery, ours)]
            for name, runner, sink in order if repeat % 2 == 0 else order[::-1]:
                timing = measure(stub, lambda r=runner: r(stub.url, work, n, c), n)  # type: ignore[misc]
                sink.append(timing)
                wall, cpu = timing.wall / n * 1000, timing.cpu / n * 1000
                print(
                    f"    repeat {repeat + 1} {name:5}: {timing.wall:6.2f} s wall, "
                    f"{wall:.3f} ms/batch, client CPU {cpu:.3f} ms/batch"
                )
    p_wall = statistics.median(t.wall for t in plain) / n * 1000
    o_wall = statistics.median(t.wall for t in ours) / n * 1000
    p_cpu = statistics.median(t.cpu for t in plain) / n * 1000
    o_cpu = statistics.median(t.cpu for t in ours) / n * 1000
    print(f"    median plain aiohttp : {p_wall:.3f} ms/batch wall, {p_cpu:.3f} ms/batch client CPU")
    print(
        f"    median deliver_batches: {o_wall:.3f} ms/batch wall, {o_cpu:.3f} ms/batch client CPU"
    )
    print(
        f"    ratio (ours/plain): {o_wall / p_wall:.2f}x wall, {o_cpu / p_cpu:.2f}x client CPU "
        f"(target: at most 2x)"
    )


def bound_check(args: argparse.Namespace, work: Workload) -> None:
    latency, c, n = args.bound_latency, args.bound_concurrency, args.bound_batches
    bound = c * BATCH / latency
    print(f"\n(2) latency bound: latency {latency * 1000:.0f} ms, concurrency {c}, {n:,} batches")
    with serve_stub_in_subprocess(StubFaults(latency=latency), validate=args.validate) as stub:
        for name, runner in (("plain", plain_aiohttp), ("ours", through_delivery)):
            timing = measure(stub, lambda r=runner: r(stub.url, work, n, c), n)  # type: ignore[misc]
            rate = n * BATCH / timing.wall
            print(
                f"    {name:5}: {rate:,.0f} customers/s = {rate / bound:.1%} of the bound "
                f"{bound:,.0f} (target: at least 90%)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds, for (1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--validate", action="store_true", help="server validates every body (slower server)"
    )
    parser.add_argument("--bound-latency", type=float, default=0.05)
    parser.add_argument("--bound-concurrency", type=int, default=16)
    parser.add_argument("--bound-batches", type=int, default=2000)
    parser.add_argument("--no-bound", action="store_true", help="skip the latency-bound check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Workload.build()
    compare(args, work)
    if not args.no_bound:
        bound_check(args, work)


if __name__ == "__main__":
    main()
