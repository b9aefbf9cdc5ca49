"""Benchmark of what keeping document parts (``customer-sync plan``'s "what changed") costs a
run, against the preparation it is added to, measured in the same process and rounds.

For ``--customers`` synthetic customers, each round times: ``prepare`` (validate, nest and
fingerprint: ``prepare_validation(validate_extract(...))``, the baseline), ``parts`` (
``parts_json`` of every document), ``record`` (``record_missing_parts`` into a fresh SQLite
ledger: the parts and their insert), ``again`` (the same call on the next run: nothing
missing). Reported: medians over ``--repeat`` rounds, and the ratio to ``prepare``.

    uv run --locked python scripts/bench_parts.py --customers 50000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from customer_sync.chunking.pool import prepare_validation
from customer_sync.devtools.synthetic import synthetic_extract
from customer_sync.ledger.parts import record_missing_parts
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.records import Extract
from customer_sync.transforms.changes import parts_json
from customer_sync.transforms.validate import validate_extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    raw = synthetic_extract(args.customers, seed=1)
    extract = Extract(
        **{name: frame.assign(_row=range(1, len(frame) + 1)) for name, frame in raw.items()},
        files={name: name for name in raw},
    )
    times: dict[str, list[float]] = {"prepare": [], "parts": [], "record": [], "again": []}
    size = 0.0
    for _ in range(args.repeat):
        started = time.perf_counter()
        chunk = prepare_validation(validate_extract(extract))
        times["prepare"].append(time.perf_counter() - started)
        documents = chunk.documents.documents.to_pylist()
        started = time.perf_counter()
        parts = [parts_json(document) for document in documents]
        times["parts"].append(time.perf_counter() - started)
        size = sum(map(len, parts)) / len(parts)
        ids = chunk.documents.customer_ids.to_pylist()
        with tempfile.TemporaryDirectory() as folder, SqliteLedger.open(Path(folder)) as ledger:
            for name in ("record", "again"):
                started = time.perf_counter()
                record_missing_parts(ledger, ids, chunk.fingerprints, chunk.documents.documents)
                times[name].append(time.perf_counter() - started)
    base = statistics.median(times["prepare"])
    print(f"{args.customers:,} customers, {args.repeat} rounds, parts {size:.0f} bytes each")
    for name, values in times.items():
        median = statistics.median(values)
        per = median / args.customers * 1e6
        print(f"{name:8s} median {median:7.3f} s  {per:6.1f} µs/customer  x{median / base:.2f}")


if __name__ == "__main__":
    main()
