"""Delivery through the Prefect flow against plain aiohttp and a naive task-per-batch flow.

In one run, against one stand-in server in its own process (no validation, no latency),
with real Customer documents (a small synthetic extract read, validated and nested as a
run does it, ~60 KB a batch; ``--small-bodies`` for the old 23 KB ones), cycled:
(a) plain aiohttp, the floor; (b) the project's delivery path as the flow runs it
(``flows.deliver.deliver_spool``: groups of batches per task run, per-batch retries, the
SQLite ledger written for every batch) inside a Prefect flow; (c) the same without the
ledger; (d) a naive flow with one Prefect task run per batch (``--naive-batches 0`` skips
it). Medians of ``--repeats``, wall time and CPU time (the client process; and every
process: client, stand-in server, Prefect's server), ratios against (a).

    uv run --locked python scripts/bench_flow_delivery.py [--batches 20000]
        [--naive-batches 2000] [--concurrency 16] [--repeats 3] [--small-bodies]
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import aiohttp
import psutil
from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.adapters.spool import SpoolWriter
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_subprocess
from customer_sync.flows.deliver import deliver_spool, task_run_size
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas import contract
from scripts.bench_delivery import BATCH, POOL, Workload, _token, plain_aiohttp
from scripts.bench_documents import mean_body_kib, synthetic_workload

WORKLOAD: list[Workload] = []
"""The documents of this benchmark run (set once by main)."""


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


def all_cpu_seconds() -> float:
    """CPU seconds of this process and every process it started (servers included)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float
    """This process."""
    all_cpu: float
    """This process and its children: stand-in server, Prefect's server."""


def timed(run: Callable[[], object]) -> Timing:
    """``run()`` timed; a run that times itself (a flow run, its start excluded) wins."""
    wall, cpu, every = time.perf_counter(), time.process_time(), all_cpu_seconds()
    own = run()
    if isinstance(own, Timing):
        return own
    return Timing(time.perf_counter() - wall, time.process_time() - cpu, all_cpu_seconds() - every)


@flow(name="bench-flow-delivery")
async def flow_delivery(
    spool: str, url: str, concurrency: int, state: str, use_ledger: bool = True
) -> Timing:
    """The flow's own delivery path, timed inside the flow run (its start is not delivery)."""
    settings = PartnerSettings(api_url=url, api_token=None, max_connections=max(64, concurrency))
    with SqliteLedger.open(Path(state)) as opened:
        ledger = opened if use_ledger else None
        run_id = opened.start_run({"bench": True})
        wall, cpu, every = time.perf_counter(), time.process_time(), all_cpu_seconds()
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
        timing = Timing(
            time.perf_counter() - wall, time.process_time() - cpu, all_cpu_seconds() - every
        )
        opened.finish_run(run_id, "completed", {})
    if any(o.status != "acknowledged" for o in outcomes):
        raise RuntimeError("a batch was not acknowledged")
    return timing


@task(name="send-one-batch", cache_policy=NONE)
async def send_one(session: aiohttp.ClientSession, url: str, body: bytes, token: str) -> int:
    headers = {"Content-Type": "application/json", contract.SESSION_TOKEN_HEADER: token}
    async with session.post(url + contract.CUSTOMERS_PATH, data=body, headers=headers) as r:
        await r.read()
        return r.status


@flow(name="bench-naive-task-per-batch")
async def naive_flow(url: str, batches: int, concurrency: int) -> None:
    """One Prefect task run per batch, awaited in the flow under a semaphore."""
    work = WORKLOAD[0]  # not a parameter: Prefect sends a flow's parameters to its API
    limiter = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        token = await _token(session, url)

        async def one(n: int) -> int:
            async with limiter:
                return await send_one(session, url, quote(work.bodies[n % POOL]), token)

        statuses = await asyncio.gather(*(one(n) for n in range(batches)))
    if any(s != 200 for s in statuses):
        raise RuntimeError("a naive batch failed")


VARIANTS = ("plain", "flow", "bare", "naive")
LABELS = {
    "plain": "plain aiohttp",
    "flow": "flow (groups + ledger)",
    "bare": "flow without ledger",
    "naive": "naive task per batch",
}


def run_variant(name: str, url: str, spool: Path, state: Path, args: argparse.Namespace) -> Timing:
    n, c = args.batches, args.concurrency
    if name == "plain":
        return timed(lambda: asyncio.run(plain_aiohttp(url, WORKLOAD[0], n, c)))
    if name == "naive":
        return timed(lambda: asyncio.run(naive_flow(url, args.naive_batches, c)))
    return asyncio.run(flow_delivery(str(spool), url, c, str(state), use_ledger=name == "flow"))


def per_batch(timings: list[Timing], batches: int) -> tuple[float, float, float]:
    """Medians in ms per batch: wall, client CPU, CPU of every process."""
    return (
        statistics.median(t.wall for t in timings) / batches * 1000,
        statistics.median(t.cpu for t in timings) / batches * 1000,
        statistics.median(t.all_cpu for t in timings) / batches * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--naive-batches", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small-bodies", action="store_true", help="the old 23 KB bodies")
    args = parser.parse_args()
    n, c = args.batches, args.concurrency
    scratch = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    prefect_home = Path(os.environ["PREFECT_HOME"])
    # registered before Prefect starts its server (at the first flow run), so they run
    # after the server has stopped; a PREFECT_HOME given by the caller is left alone
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    if prefect_home.name.startswith("bench-prefect-"):
        atexit.register(shutil.rmtree, prefect_home, ignore_errors=True)
    work = Workload.build() if args.small_bodies else synthetic_workload()
    WORKLOAD.append(work)
    spool = scratch / "spool.arrow"
    write_spool(spool, work, n)
    size = task_run_size(n)
    print(
        f"delivery: {n:,} batches of {BATCH} (~{mean_body_kib(work):.0f} KB bodies), "
        f"concurrency {c}, no latency, {args.repeats} runs; the flow's task runs: "
        f"{-(-n // size):,} of {size} batches"
    )
    names = [v for v in VARIANTS if v != "naive" or args.naive_batches]
    runs: dict[str, list[Timing]] = {name: [] for name in names}
    count = {name: args.naive_batches if name == "naive" else n for name in names}
    with serve_stub_in_subprocess(StubFaults(), validate=False) as stub:
        asyncio.run(plain_aiohttp(stub.url, work, 200, c))  # warm the server
        asyncio.run(naive_flow(stub.url, 10, c))  # start Prefect's server, untimed
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                state = scratch / f"state-{name}-{repeat}"
                runs[name].append(run_variant(name, stub.url, spool, state, args))
            walls = (f"{k} {v[-1].wall / count[k] * 1000:.3f}" for k, v in runs.items())
            print(f"  repeat {repeat + 1}, ms/batch wall: " + ", ".join(walls), flush=True)
    floor_wall, floor_cpu, _ = per_batch(runs["plain"], n)
    print("medians, ms per batch (CPU: this process / every process: + stand-in + Prefect):")
    for name in names:
        wall, cpu, every = per_batch(runs[name], count[name])
        line = f"  {LABELS[name]:24}: {wall:6.3f} wall, CPU {cpu:6.3f} / {every:6.3f}"
        if name != "plain":
            line += f"  ({wall / floor_wall:5.2f}x wall, {cpu / floor_cpu:5.2f}x client CPU)"
        print(line)
    print("  target: flow (groups + ledger) within 2x of plain aiohttp")


if __name__ == "__main__":
    main()
