"""Delivery through the Prefect flow against plain aiohttp and a naive task-per-batch flow.

In one run, against one stand-in server in its own process (no validation, no latency):
(a) plain aiohttp, the floor; (b) the project's delivery path as the flow runs it
(``flows.deliver.deliver_spool``: groups of 100 batches per task run, per-batch retries,
the SQLite ledger written for every batch) inside a Prefect flow; (c) a naive flow with
one Prefect task run per batch. Medians of ``--repeats``; ratios against (a).

    uv run --locked python scripts/bench_flow_delivery.py [--batches 20000]
        [--naive-batches 2000] [--concurrency 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import aiohttp
from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from adapters.delivery import RetryPolicy
from adapters.ledger import SqliteLedger
from adapters.partner_client import PartnerClient, PartnerSettings
from adapters.spool import SpoolWriter
from adapters.stub_server import StubFaults, serve_stub_in_subprocess
from flows.deliver import deliver_spool
from schemas import contract
from scripts.bench_delivery import BATCH, POOL, Workload, _token, plain_aiohttp


def write_spool(path: Path, work: Workload, batches: int) -> None:
    """``batches`` batches of documents; ids repeat every POOL batches, one record batch each."""
    with SpoolWriter(path) as spool:
        done = 0
        while done < batches:
            take = min(POOL, batches - done)
            ids = [cid for slot in range(take) for cid in work.ids[slot]]
            docs = [doc for slot in range(take) for doc in work.documents[slot]]
            spool.write(ids, ["POST"] * len(ids), ["f"] * len(ids), docs)
            done += take


@flow(name="bench-flow-delivery")
async def flow_delivery(
    spool: str, url: str, concurrency: int, state: str, use_ledger: bool = True
) -> float:
    """The flow's own delivery path; returns the seconds spent delivering."""
    settings = PartnerSettings(api_url=url, api_token=None, max_connections=max(64, concurrency))
    with SqliteLedger.open(Path(state)) as opened:
        ledger = opened if use_ledger else None
        run_id = opened.start_run({"bench": True})
        started = time.perf_counter()
        async with PartnerClient(settings) as client:
            outcomes = await deliver_spool(
                Path(spool),
                client,
                ledger,
                run_id,
                batch_size=BATCH,
                concurrency=concurrency,
                policy=RetryPolicy(),
            )
        elapsed = time.perf_counter() - started
        opened.finish_run(run_id, "completed", {})
    if any(o.status != "acknowledged" for o in outcomes):
        raise RuntimeError("a batch was not acknowledged")
    return elapsed


@task(name="send-one-batch", cache_policy=NONE)
async def send_one(session: aiohttp.ClientSession, url: str, body: bytes, token: str) -> int:
    headers = {"Content-Type": "application/json", contract.SESSION_TOKEN_HEADER: token}
    async with session.post(url + contract.CUSTOMERS_PATH, data=body, headers=headers) as r:
        await r.read()
        return r.status


@flow(name="bench-naive-task-per-batch")
async def naive_flow(url: str, batches: int, concurrency: int, work_pool: int) -> float:
    """One Prefect task run per batch, awaited in the flow under a semaphore."""
    work = Workload.build()
    limiter = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        token = await _token(session, url)
        started = time.perf_counter()

        async def one(n: int) -> int:
            async with limiter:
                return await send_one(session, url, quote(work.bodies[n % work_pool]), token)

        statuses = await asyncio.gather(*(one(n) for n in range(batches)))
        elapsed = time.perf_counter() - started
    if any(s != 200 for s in statuses):
        raise RuntimeError("a naive batch failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--naive-batches", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, c = args.batches, args.concurrency
    work = Workload.build()
    scratch = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    spool = scratch / "spool.arrow"
    write_spool(spool, work, n)
    plain: list[float] = []
    ours: list[float] = []
    bare: list[float] = []
    naive: list[float] = []
    print(f"delivery: {n:,} batches of {BATCH}, concurrency {c}, no latency, {args.repeats} runs")
    with serve_stub_in_subprocess(StubFaults(), validate=False) as stub:
        asyncio.run(plain_aiohttp(stub.url, work, 200, c))  # warm the server
        for repeat in range(args.repeats):
            started = time.perf_counter()
            asyncio.run(plain_aiohttp(stub.url, work, n, c))
            plain.append(time.perf_counter() - started)
            state = scratch / f"state-{repeat}"
            ours.append(asyncio.run(flow_delivery(str(spool), stub.url, c, str(state))))
            bare.append(
                asyncio.run(flow_delivery(str(spool), stub.url, c, str(state) + "-b", False))
            )
            naive.append(asyncio.run(naive_flow(stub.url, args.naive_batches, c, POOL)))
            print(
                f"  repeat {repeat + 1}: plain {plain[-1] / n * 1000:.3f} ms/batch, "
                f"flow {ours[-1] / n * 1000:.3f} ms/batch, "
                f"flow without ledger {bare[-1] / n * 1000:.3f} ms/batch, "
                f"naive {naive[-1] / args.naive_batches * 1000:.3f} ms/batch"
            )
    p = statistics.median(plain) / n * 1000
    o = statistics.median(ours) / n * 1000
    b = statistics.median(bare) / n * 1000
    v = statistics.median(naive) / args.naive_batches * 1000
    print(f"  median plain aiohttp          : {p:.3f} ms/batch (1.00x)")
    print(f"  median flow (groups + ledger) : {o:.3f} ms/batch ({o / p:.2f}x; target <= 2x)")
    print(f"  median flow without ledger    : {b:.3f} ms/batch ({b / p:.2f}x)")
    print(f"  median naive task per batch   : {v:.3f} ms/batch ({v / p:.2f}x)")
    print(f"  task runs for {n:,} batches: flow {-(-n // 100):,}, naive {n:,}")


if __name__ == "__main__":
    main()
