"""End to end: CSV in, every customer acknowledged by the stand-in server, against its parts.

In one run: generate (or reuse, under ./bench-data/) a CSV extract of ``--customers``;
start the stand-in server in its own process (no validation, no added latency); then
(a) time ``customer-sync run`` on it (a fresh state folder, so every customer is sent)
as a user runs it, in a subprocess; (b) time plain aiohttp delivering the same number of
batches of 50 (``scripts/bench_delivery.plain_aiohttp``); (c) take the transform time
(read + validate + nest + serialise) from the run's own report (its ``prepare`` stage).
Prints (a) against (b) + (c); the target is (a) within 2x of that sum.

    uv run --locked python scripts/bench_end_to_end.py [--customers 1000000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.stub_server import StubFaults, serve_stub_in_subprocess  # noqa: E402
from adapters.synthetic import write_synthetic_extract  # noqa: E402
from scripts.bench_delivery import BATCH, Workload, plain_aiohttp  # noqa: E402


def extract_folder(customers: int) -> Path:
    folder = ROOT / "bench-data" / f"e2e-{customers}"
    if not (folder / "cards.csv").exists():
        print(f"generating {customers:,} customers into {folder} ...", flush=True)
        write_synthetic_extract(folder, customers, "csv", seed=11)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    source = extract_folder(args.customers)
    scratch = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    env = dict(os.environ, PREFECT_HOME=str(scratch / "prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with serve_stub_in_subprocess(StubFaults(), validate=False) as stub:
        report = scratch / "report.json"
        command = [
            sys.executable, "-m", "flows.cli", "run", str(source),
            "--api-url", stub.url, "--state", str(scratch / "state"),
            "--concurrency", str(args.concurrency), "--report", str(report), "--no-progress",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        total = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"customer-sync run exited {done.returncode}")
        data = json.loads(report.read_text())
        batches = len(data["batches"])
        work = Workload.build()
        started = time.perf_counter()
        asyncio.run(plain_aiohttp(stub.url, work, batches, args.concurrency))
        plain = time.perf_counter() - started
    stages = data["seconds_by_stage"]
    transform = stages.get("prepare", 0.0)
    floor = transform + plain
    print(f"end to end, {args.customers:,} customers ({batches:,} batches of <= {BATCH}):")
    print(
        f"  customer-sync run, whole process : {total:8.2f} s (peak RSS {peak / 1024:,.0f} MiB"
        f"{'' if before == 0 else ', approximate'})"
    )
    print(f"    of which prepare               : {transform:8.2f} s")
    print(f"    of which deliver               : {stages.get('deliver', 0.0):8.2f} s")
    print(f"  plain aiohttp, same batches      : {plain:8.2f} s")
    print(f"  transform + plain delivery       : {floor:8.2f} s")
    print(
        f"  ratio run / (transform + plain)  : {total / floor:8.2f}x  (target <= 2x; the "
        "run includes Prefect's start, about 6-9 s)"
    )
    print(f"  customers sent: {data['customers_sent']:,}, reconciles: {data['reconciles']}")


if __name__ == "__main__":
    main()
