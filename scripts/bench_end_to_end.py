"""End to end: CSV in, every customer acknowledged by the stand-in server, against its parts.

In one run: generate (or reuse, under ./bench-data/) a CSV extract of ``--customers``;
start the stand-in server in its own process (no validation, no added latency); then
(a) time ``customer-sync run`` on it (a fresh state folder, so every customer is sent) as a
user runs it, in a subprocess, with a Prefect home that is already set up (a first run on
the sample ``data/`` extract migrates its database, as a user's first run ever did);
(b) time plain aiohttp delivering the same number of batches of 50, with bodies of real
documents of the same extract (its first customers, read, validated and nested as the run
does it: ``scripts/bench_documents``), cycled; (c) take the transform time (read + validate
+ nest + serialise + plan) from the run's own report (its ``prepare`` stage).

Prints (a) whole process and (a) flow run alone (from its first to its last log line)
against (b) + (c); the target is (a) within 2x of that sum. Everything it creates outside
./bench-data/ is removed at the end.

    uv run --locked python scripts/bench_end_to_end.py [--customers 1000000] [--concurrency 16]
        [--stream]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_subprocess  # noqa: E402
from customer_sync.devtools.synthetic import write_synthetic_extract  # noqa: E402
from scripts.bench_delivery import BATCH, plain_aiohttp  # noqa: E402
from scripts.bench_documents import extract_workload, mean_body_kib  # noqa: E402

FLOW_STARTED = "Beginning flow run"
FLOW_FINISHED = "Finished in state"  # on the flow run's line, not a task run's
SAMPLE = ROOT / "data"


def extract_folder(customers: int) -> Path:
    folder = ROOT / "bench-data" / f"e2e-{customers}"
    if not (folder / "cards.csv").exists():
        print(f"generating {customers:,} customers into {folder} ...", flush=True)
        write_synthetic_extract(folder, customers, "csv", seed=11)
    return folder


@dataclass
class Run:
    """One ``customer-sync run`` subprocess, timed from outside."""

    seconds: float = 0.0
    cpu: float = 0.0
    """CPU seconds of the run and every process it started (Prefect's server, workers)."""
    flow_started: float | None = None
    flow_finished: float | None = None
    output: list[str] = field(default_factory=list)
    returncode: int = 0


def run_sync(source: Path, api_url: str, state: Path, report: Path, env: dict[str, str],
             concurrency: int, *extra: str) -> Run:  # fmt: skip
    command = [
        sys.executable, "-m", "customer_sync.cli.app", "run", str(source),
        "--api-url", api_url, "--state", str(state),
        "--concurrency", str(concurrency), "--report", str(report), "--no-progress", *extra,
    ]  # fmt: skip
    run = Run()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:  # each line's arrival time marks the flow run's bounds
            now = time.perf_counter() - started
            run.output.append(line)
            if FLOW_STARTED in line and run.flow_started is None:
                run.flow_started = now
            elif FLOW_FINISHED in line and "Flow run '" in line:
                run.flow_finished = now
        run.returncode = process.wait()
    run.seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode != 0:
        print("".join(run.output[-40:]))
        raise SystemExit(f"customer-sync run exited {run.returncode}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--stream", action="store_true", help="also time `run --stream` (on a fresh ledger)"
    )
    args = parser.parse_args()
    source = extract_folder(args.customers)
    scratch = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        measure(source, scratch, args.customers, args.concurrency, stream=args.stream)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure(
    source: Path, scratch: Path, customers: int, concurrency: int, *, stream: bool = False
) -> None:
    env = dict(os.environ, PREFECT_HOME=str(scratch / "prefect"), PYTHONUNBUFFERED="1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    print(f"reading real documents of the first customers of {source} ...", flush=True)
    work = extract_workload(source)
    with serve_stub_in_subprocess(StubFaults(), validate=False) as stub:
        # a user's Prefect home is set up already: the first run ever migrates its database
        prime = run_sync(SAMPLE, stub.url, scratch / "prime", scratch / "prime.json", env, 4)
        report = scratch / "report.json"
        run = run_sync(source, stub.url, scratch / "state", report, env, concurrency)
        data = json.loads(report.read_text())
        batches = len(data["batches"])
        streamed = None
        if stream:
            streamed = run_sync(
                source, stub.url, scratch / "streamed", scratch / "streamed.json", env,
                concurrency, "--stream",
            )  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(plain_aiohttp(stub.url, work, batches, concurrency))
        plain, plain_cpu = time.perf_counter() - wall, time.process_time() - cpu
    stages = data["seconds_by_stage"]
    transform, deliver = stages.get("prepare", 0.0), stages.get("deliver", 0.0)
    floor = transform + plain
    flow = (
        run.flow_finished - run.flow_started
        if run.flow_started is not None and run.flow_finished is not None
        else None
    )
    per_batch = 1000 / max(batches, 1)
    print(f"end to end, {customers:,} customers ({batches:,} batches of <= {BATCH}):")
    _row("first run in a new Prefect home (untimed)", prime.seconds, "data/, migrations")
    _row("customer-sync run, whole process", run.seconds, f"CPU {run.cpu:.1f} s, all processes")
    if flow is not None and run.flow_started is not None and run.flow_finished is not None:
        _row("  start-up to the flow's first line", run.flow_started, "imports, Prefect's server")
        _row("  flow run, first to last line", flow)
        _row("    of which prepare", transform)
        _row("    of which deliver", deliver, f"{deliver * per_batch:.3f} ms/batch")
        _row("    rest of the flow run", flow - transform - deliver)
        _row("  after the flow's last line", run.seconds - run.flow_finished, "server stop, exit")
    _row(
        f"plain aiohttp, ~{mean_body_kib(work):.0f} KB bodies",
        plain,
        f"{plain * per_batch:.3f} ms/batch, client CPU {plain_cpu:.1f} s",
    )
    _row("transform + plain delivery", floor)
    _ratio("whole process / (transform + plain)", run.seconds / floor, "target <= 2x")
    if flow is not None:
        _ratio("flow run / (transform + plain)", flow / floor, "the process's start/exit left out")
        _ratio("deliver / plain delivery", deliver / plain)
    if streamed is not None:
        _row("customer-sync run --stream, whole process", streamed.seconds)
        _ratio("--stream whole / (transform + plain)", streamed.seconds / floor, "target <= 2x")
    print(f"  customers sent: {data['customers_sent']:,}, reconciles: {data['reconciles']}")


def _row(label: str, seconds: float, note: str = "") -> None:
    print(f"  {label:44}: {seconds:7.2f} s" + (f"  ({note})" if note else ""))


def _ratio(label: str, ratio: float, note: str = "") -> None:
    print(f"  ratio {label:38}: {ratio:7.2f}x" + (f"  ({note})" if note else ""))


if __name__ == "__main__":
    main()
