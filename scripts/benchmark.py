"""Every benchmark of the project in one go (``make bench``), each against its baseline.

Runs, one after another, each in its own process so their memory peaks do not mix:
nest (dict approach vs reference vs columnar), read+validate, preparation (dict baseline
vs whole-extract vs chunked, 1M vs 5M), delivery client vs plain aiohttp and the latency
bound, flow delivery vs plain aiohttp vs one task run per batch, end to end, and
guards-first vs streaming vs two shards at once, and the CLI's start-up (whole processes,
with and without .pyc files).
``--quick`` uses small sizes (a smoke run of a few minutes); the default sizes are the
issue's targets (1M customers, 20,000 batches) and take a long while on 2 cores.

    uv run --locked python scripts/benchmark.py [--quick] [--only nest delivery ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FULL = {
    "nest": ["scripts/bench_nest.py", "--customers", "1000000"],
    "validate": ["scripts/bench_validate.py", "--customers", "1000000"],
    "prepare": [
        "scripts/bench_prepare.py",
        "--customers",
        "1000000",
        "--paths",
        "baseline,whole,chunked",
    ],
    "prepare-5m": ["scripts/bench_prepare.py", "--customers", "5000000", "--paths", "chunked"],
    "delivery": ["scripts/bench_delivery.py", "--batches", "20000"],
    "flow-delivery": ["scripts/bench_flow_delivery.py", "--batches", "20000"],
    "end-to-end": ["scripts/bench_end_to_end.py", "--customers", "1000000"],
    "scale-out": ["scripts/bench_scale_out.py", "--customers", "1000000"],
    "startup": ["scripts/bench_startup.py", "--runs", "5", "--no-bytecode"],
}
QUICK = {
    "nest": ["scripts/bench_nest.py", "--customers", "100000", "--repeat", "1"],
    "validate": ["scripts/bench_validate.py", "--customers", "100000", "--repeat", "1"],
    "prepare": ["scripts/bench_prepare.py", "--customers", "100000",
                "--paths", "baseline,whole,chunked"],
    "prepare-5m": ["scripts/bench_prepare.py", "--customers", "200000", "--paths", "chunked"],
    "delivery": ["scripts/bench_delivery.py", "--batches", "2000", "--repeats", "1"],
    "flow-delivery": ["scripts/bench_flow_delivery.py", "--batches", "2000", "--repeats", "1",
                      "--naive-batches", "300"],
    "end-to-end": ["scripts/bench_end_to_end.py", "--customers", "100000"],
    "scale-out": ["scripts/bench_scale_out.py", "--customers", "20000"],
    "startup": ["scripts/bench_startup.py", "--runs", "2", "--cases", "help,validate,demo-warm"],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--only", nargs="+", choices=sorted(FULL), help="run these stages only")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    failed = []
    for name, command in plan.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *command], cwd=ROOT)
        print(f"=== {name}: {time.perf_counter() - started:.0f} s, exit {done.returncode}")
        if done.returncode:
            failed.append(name)
    if failed:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
