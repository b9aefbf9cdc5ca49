"""What the ledger's writes and lookups cost per batch, on SQLite and on PostgreSQL.

For each backend: ``--batches`` batches of 50, each ``mark_sending`` then ``record_outcome``
(each its own transaction, called directly); then the delivery's group-commit path
(``amark_sending`` awaited, ``queue_outcome``, ``--concurrency`` batches at a time, one
``aflush`` at the end); then ``acknowledged_fingerprints`` of ``--lookup`` ids among all
acknowledged ones. Medians (and p90) in microseconds. PostgreSQL is the throwaway server
of ``tests/postgres_support.py`` on 127.0.0.1 (``fsync=off``: this measures the ledger's
statements and round trips, not a disk), or ``--url`` for your own (an empty database).

    uv run --locked python scripts/bench_ledger.py [--batches 2000] [--lookup 50000]
        [--url postgresql://...] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from customer_sync.ledger.factory import open_ledger
from customer_sync.schemas.records import Batch, BatchOutcome


def _batch(b: int) -> tuple[Batch, BatchOutcome, dict[str, str], dict[str, bytes]]:
    ids = tuple(f"C{b:06d}-{i:02d}" for i in range(50))
    documents = {cid: orjson.dumps({"sourceCustomerId": cid, "accounts": []}) for cid in ids}
    batch = Batch(f"b{b}", "POST", ids, tuple(documents.values()))
    outcome = BatchOutcome(
        batch_id=batch.batch_id,
        method="POST",
        customer_ids=ids,
        status="acknowledged",
        attempts=1,
        http_status=200,
        request_id=f"req-{b}",
        error=None,
    )
    return batch, outcome, {cid: f"fp:{cid}" for cid in ids}, documents


def _us(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"p50 {statistics.median(ordered) * 1e6:7.0f} µs  p90 {p90 * 1e6:7.0f} µs"


@contextmanager
def _location(backend: str, url: str | None) -> Iterator[str | Path]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-ledger-") as folder:
            yield Path(folder) / "state"
        return
    if url:
        yield url
        return
    from tests.postgres_support import PostgresServer

    server = PostgresServer().start()
    try:
        yield server.database()
    finally:
        server.close()


def bench(backend: str, url: str | None, batches: int, lookup: int, concurrency: int) -> None:
    with _location(backend, url) as location, open_ledger(location) as ledger:
        run_id = ledger.start_run({"bench": True})
        marks: list[float] = []
        outcomes: list[float] = []
        for b in range(batches):
            batch, outcome, fingerprints, documents = _batch(b)
            started = time.perf_counter()
            ledger.mark_sending(run_id, batch)
            marked = time.perf_counter()
            ledger.record_outcome(run_id, outcome, fingerprints, documents)
            outcomes.append(time.perf_counter() - marked)
            marks.append(marked - started)

        async def delivery() -> float:
            limiter = asyncio.Semaphore(concurrency)

            async def one(b: int) -> None:
                batch, outcome, fingerprints, documents = _batch(b)
                async with limiter:
                    await ledger.amark_sending(run_id, batch)
                    ledger.queue_outcome(run_id, outcome, fingerprints, documents)

            started = time.perf_counter()
            await asyncio.gather(*(one(b) for b in range(batches, 2 * batches)))
            await ledger.aflush()
            return time.perf_counter() - started

        grouped = asyncio.run(delivery())
        asked = [f"C{b:06d}-{i:02d}" for b in range(0, 4 * batches, 4) for i in range(50)]
        asked = (asked * (lookup // max(len(asked), 1) + 1))[:lookup]
        lookups = []
        for _ in range(5):
            started = time.perf_counter()
            found = ledger.acknowledged_fingerprints(asked)
            lookups.append(time.perf_counter() - started)
        ledger.finish_run(run_id, "completed", {})
        known = ledger.known_customer_count()
        ledger.close()  # SQLite folds its WAL back into the file
        size = _size_on_disk(location)
    print(f"{backend}: {batches} batches of 50 ({known:,} customers acknowledged)")
    print(f"  mark_sending            {_us(marks)}")
    print(f"  record_outcome (50 ack) {_us(outcomes)}")
    print(
        f"  group commit, C={concurrency:<3}     {grouped / batches * 1e6:7.0f} µs per batch (mean)"
    )
    print(
        f"  acknowledged_fingerprints of {len(asked):,} ids: median "
        f"{statistics.median(lookups) * 1e3:.0f} ms ({len(found):,} found)"
    )
    print(
        f"  size: {size / 1e6:.1f} MB for {known:,} customers acknowledged once each "
        f"({size / known:.0f} bytes a customer: acknowledged, its history row, its share of "
        f"{2 * batches:,} batch rows, indexes)"
    )


def _size_on_disk(location: str | Path) -> int:
    """The ledger's bytes: SQLite's files, or PostgreSQL's tables with their indexes and
    TOAST (not the empty database's own catalog)."""
    if isinstance(location, Path):
        return sum(f.stat().st_size for f in location.glob("ledger.sqlite3*"))
    import psycopg

    with psycopg.connect(str(location)) as connection:
        row = connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--lookup", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--url", help="your own PostgreSQL database (empty) instead")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        bench(backend, args.url, args.batches, args.lookup, args.concurrency)


if __name__ == "__main__":
    main()
