"""Guards-first against streaming against two shards at once, end to end, in one run.

In one run, against one stand-in partner in its own process (``--latency`` seconds added to
every request) and one Prefect server started here (so no variant pays an ephemeral
server's start), each variant is a real ``customer-sync run`` process on a fresh state
folder, delivering the whole extract (CSV, generated once under ./bench-data/):

* ``guards-first``  the default: prepare every chunk, check the guards, then deliver;
* ``stream``        ``--stream``: each chunk delivered while the next ones are prepared;
* ``2 shards``      two processes at once, ``--shard 1/2`` and ``--shard 2/2``, one ledger
                    (the "two workers on one machine" of DESIGN.md; each process has its
                    own pool of chunk workers, so four busy processes share two cores).

Prints each variant's wall time (median of ``--repeats``) and its ratio to guards-first.

``--flow-runs`` compares instead (issue 13) the same total partner budget (``--concurrency``,
also set as the server's global concurrency limit ``partner-requests``) spent by:

* ``1 run, sqlite`` / ``1 run, postgresql``  one ``customer-sync run`` process, the ledger a
                    SQLite folder or a PostgreSQL database (tests/postgres_support.py's
                    throwaway server on 127.0.0.1);
* ``2 flow runs, postgresql`` / ``..., sqlite``  one run of the ``sync-customers-sharded``
                    deployment (prefect.yaml) on two process workers: the parent plans the
                    whole extract, then two shards run as child flow runs, one per worker,
                    each leasing half of the budget. Its plan and shard times are printed.

``--gcl-cost N`` measures what the per-request alternative would cost: N slots of the
budget taken and given back one request at a time (``concurrency()`` around each), at
``--concurrency`` at once; median and p90 per request, and requests per second.

    uv run --locked python scripts/bench_scale_out.py [--customers 1000000]
        [--latency 0.05] [--concurrency 16] [--repeats 1] [--flow-runs] [--gcl-cost 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_subprocess  # noqa: E402
from scripts.bench_end_to_end import extract_folder  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """A Prefect server on 127.0.0.1 for the whole benchmark; yields the runs' environment."""
    port = _free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the Prefect server did not start") from None
                time.sleep(0.5)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _command(source: Path, url: str, state: Path, concurrency: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "customer_sync.cli.app", "run", str(source), "--api-url", url,
        "--state", str(state), "--concurrency", str(concurrency), "--no-progress", *extra,
    ]  # fmt: skip


def run_variant(
    commands: list[list[str]], env: dict[str, str], reports: list[Path]
) -> tuple[float, int]:
    """Start every command at once; the wall time until the last ends, customers sent."""
    started = time.perf_counter()
    processes = []
    for command, report in zip(commands, reports, strict=True):
        processes.append(
            subprocess.Popen(
                [*command, "--report", str(report)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a run exited {process.returncode}: {err.decode()[-2000:]}")
    wall = time.perf_counter() - started
    sent = sum(json.loads(r.read_text())["customers_sent"] for r in reports)
    return wall, sent


def flow_runs(args: argparse.Namespace) -> None:
    """One run against two shards as flow runs on two workers, SQLite and PostgreSQL."""
    from scripts._flow_run_bench import lease_cost, set_budget, sharded_run, two_workers
    from tests.postgres_support import PostgresServer

    source = extract_folder(args.customers)
    scratch = Path(tempfile.mkdtemp(prefix="bench-flow-runs-"))
    budget = args.concurrency
    walls: dict[str, list[float]] = {}
    stages: dict[str, list[dict[str, float]]] = {}
    postgres = PostgresServer().start()
    try:
        with (
            prefect_server(scratch / "prefect") as env,
            serve_stub_in_subprocess(StubFaults(latency=args.latency), validate=False) as stub,
        ):
            env = dict(env, PREFECT_WORKER_QUERY_SECONDS="1", NO_PROXY="127.0.0.1,localhost",
                       CUSTOMER_SYNC_WORK_DIR=str(scratch / "work"))  # fmt: skip
            set_budget(env, budget)
            if args.gcl_cost:
                seconds, wall = lease_cost(env, args.gcl_cost, budget)
                ms = sorted(1000 * x for x in seconds)
                print(
                    f"per-request slot (take + give back), {args.gcl_cost} requests, {budget} "
                    f"at once: median {statistics.median(ms):.1f} ms, p90 "
                    f"{ms[int(0.9 * len(ms))]:.1f} ms, {args.gcl_cost / wall:.0f} requests/s"
                )
            if args.gcl_only:
                return
            print(
                f"{args.customers:,} customers, partner latency {args.latency * 1000:.0f} ms, "
                f"partner budget {budget} requests in flight in total, {args.repeats} repeat(s)"
            )
            with two_workers(env, scratch / "logs"):
                for repeat in range(args.repeats):
                    for backend in ("sqlite", "postgresql"):
                        state = (
                            str(scratch / f"state-{repeat}-one-{backend}")
                            if backend == "sqlite"
                            else postgres.database()
                        )
                        name = f"1 run, {backend}"
                        report = scratch / f"{repeat}-one-{backend}.json"
                        command = _command(source, stub.url, Path(state), budget)
                        command[command.index("--state") + 1] = state
                        wall, sent = run_variant([command], env, [report])
                        _check_sent(name, sent, args.customers)
                        walls.setdefault(name, []).append(wall)
                        print(f"  repeat {repeat + 1} {name:<26}: {wall:7.1f} s", flush=True)
                    for backend in ("sqlite", "postgresql"):
                        state = (
                            str(scratch / f"state-{repeat}-sharded-{backend}")
                            if backend == "sqlite"
                            else postgres.database()
                        )
                        name = f"2 flow runs, {backend}"
                        report = scratch / f"{repeat}-sharded-{backend}.json"
                        wall, sharded = sharded_run(env, source, stub.url, state, report, budget)
                        _check_sent(name, sharded["totals"]["customers_sent"], args.customers)
                        walls.setdefault(name, []).append(wall)
                        stages.setdefault(name, []).append(sharded["seconds_by_stage"])
                        split = ", ".join(
                            f"{k} {v:.1f} s" for k, v in sharded["seconds_by_stage"].items()
                        )
                        print(
                            f"  repeat {repeat + 1} {name:<26}: {wall:7.1f} s ({split})",
                            flush=True,
                        )
    finally:
        postgres.close()
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(walls["1 run, sqlite"])
    print("medians:")
    for name, values in walls.items():
        wall = statistics.median(values)
        print(f"  {name:<26}: {wall:7.1f} s  ({wall / base:.2f}x 1 run, sqlite)")
    if args.latency:
        bound = args.customers / 50 * args.latency / budget
        print(f"  delivery alone at the budget's latency bound: {bound:.1f} s")


def _check_sent(name: str, sent: int, customers: int) -> None:
    if sent != customers:
        raise SystemExit(f"{name}: sent {sent:,}, not {customers:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--flow-runs", action="store_true", help="issue 13's comparison")
    parser.add_argument("--gcl-cost", type=int, default=0, metavar="N")
    parser.add_argument("--gcl-only", action="store_true", help="only --gcl-cost")
    args = parser.parse_args()
    if args.flow_runs or args.gcl_only:
        flow_runs(args)
        return
    source = extract_folder(args.customers)
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    c = args.concurrency
    variants = {
        "guards-first": lambda state: [_command(source, url, state, c)],
        "stream": lambda state: [_command(source, url, state, c, "--stream")],
        "2 shards": lambda state: [
            _command(source, url, state, c, "--shard", f"{n}/2") for n in (1, 2)
        ],
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    try:
        with (
            prefect_server(scratch / "prefect") as env,
            serve_stub_in_subprocess(StubFaults(latency=args.latency), validate=False) as stub,
        ):
            url = stub.url
            print(
                f"{args.customers:,} customers, partner latency {args.latency * 1000:.0f} ms, "
                f"concurrency {c} per process, {args.repeats} repeat(s)"
            )
            for repeat in range(args.repeats):
                for name, commands_for in variants.items():
                    state = scratch / f"state-{repeat}-{name.replace(' ', '-')}"
                    commands = commands_for(state)
                    reports = [
                        state.with_name(state.name + f"-{n}.json") for n in range(len(commands))
                    ]
                    wall, sent = run_variant(commands, env, reports)
                    if sent != args.customers:
                        raise SystemExit(f"{name}: sent {sent:,}, not {args.customers:,}")
                    walls[name].append(wall)
                    print(f"  repeat {repeat + 1} {name:<13}: {wall:7.1f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(walls["guards-first"])
    bound = args.customers / 50 * args.latency / c  # delivery alone, at the latency bound
    print("medians:")
    for name, values in walls.items():
        wall = statistics.median(values)
        print(f"  {name:<13}: {wall:7.1f} s  ({wall / base:.2f}x guards-first)")
    if args.latency:
        print(f"  delivery alone at the latency bound (one process): {bound:.1f} s")


if __name__ == "__main__":
    main()
