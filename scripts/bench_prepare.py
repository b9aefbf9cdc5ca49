"""Benchmark: validate + nest + fingerprint a generated extract, whole vs in chunks.

Each path runs in a fresh subprocess, so its memory is its own:

* ``baseline`` the same read_extract and validate_extract, then the straightforward dict
               approach to the documents (``bench_nest.baseline_documents``: rows as
               dicts, orjson per customer); ratios against it are printed (the issue's
               target: 5x); about 10 GB at 1M customers, so not in the default paths;
* ``whole``    read_extract, validate_extract and fingerprinted_document_arrays (the
               documents as Arrow bytes and their fingerprints) over the whole extract,
               in one process;
* ``chunked``  ``chunking.pool.prepared_chunks``: pass 1 (read and bucket) here, passes 2
               and 3 (route; validate, nest, fingerprint each chunk) in a pool of worker
               processes; the parent casts each chunk's documents to the spool's Arrow type,
               as the spool does, and drops them.

Reported per path: wall time of each stage, CPU seconds of the whole process tree, and
peak memory: ``ru_maxrss`` of the benchmark process and of its largest worker, and the
largest **sum** of the RSS of the process and its workers, sampled every 50 ms (what the
machine must hold at once).

The extract is generated once and kept under ``./bench-data/`` (same folders as
``bench_validate.py``). Usage::

    uv run --locked python scripts/bench_prepare.py --customers 1000000
    uv run --locked python scripts/bench_prepare.py --customers 1000000 --paths baseline,chunked
    uv run --locked python scripts/bench_prepare.py --customers 5000000 --paths chunked
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class TreeMemory:
    """Samples the RSS of this process plus its descendants; keeps the largest sum."""

    def __init__(self, interval: float = 0.05) -> None:
        import psutil

        self._me = psutil.Process()
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for process in [self._me, *self._me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _checksum(ids: Any, fingerprints: Any) -> int:
    """An order-free checksum of (customer id, fingerprint) pairs: both paths must agree."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.large_string()
    pairs = pc.binary_join_element_wise(
        pa.array(ids).cast(text), pa.array(fingerprints).cast(text), pa.scalar(":", text)
    )
    hashed = pd.util.hash_array(pairs.to_numpy(zero_copy_only=False), categorize=False)
    return int(np.bitwise_xor.reduce(hashed)) if len(hashed) else 0


def _read_and_validate(folder: str, stages: dict[str, float]) -> Any:
    """The whole extract read and validated in this process, both stages timed."""
    from customer_sync.adapters.readers import read_extract
    from customer_sync.transforms.validate import validate_extract

    start = time.perf_counter()
    extract = read_extract(folder)
    stages["read"] = time.perf_counter() - start
    mark = time.perf_counter()
    validation = validate_extract(extract)
    del extract
    stages["validate"] = time.perf_counter() - mark
    return validation


def _baseline(folder: str) -> dict[str, Any]:
    """The straightforward way: the same read and validation, then documents built as
    Python dicts and serialised with orjson one customer at a time (``bench_nest``'s
    baseline, the approach DESIGN.md measured at about 60 s and 4.4 GB)."""
    from scripts.bench_nest import baseline_documents

    stages: dict[str, float] = {}
    validation = _read_and_validate(folder, stages)
    mark = time.perf_counter()
    documents = baseline_documents(validation.customers, validation.accounts, validation.cards)
    stages["dict nest+serialise"] = time.perf_counter() - mark
    return {
        "stages": stages,
        "documents": len(documents),
        "valid": validation.customers_valid,
        "checksum": None,
    }


def _whole(folder: str) -> dict[str, Any]:
    from customer_sync.transforms.fingerprint import fingerprinted_document_arrays

    stages: dict[str, float] = {}
    validation = _read_and_validate(folder, stages)
    mark = time.perf_counter()
    documents, fingerprints = fingerprinted_document_arrays(
        validation.customers, validation.accounts, validation.cards
    )
    stages["nest+fingerprint"] = time.perf_counter() - mark
    return {
        "stages": stages,
        "documents": len(documents),
        "valid": validation.customers_valid,
        "checksum": _checksum(documents.customer_ids, fingerprints),
    }


def _chunked(folder: str, chunk_customers: int, workers: int) -> dict[str, Any]:
    import pyarrow as pa

    from customer_sync.adapters.readers import locate_tables
    from customer_sync.chunking.partitioner import estimate_rows, partitions_for
    from customer_sync.chunking.pool import prepared_chunks

    stages: dict[str, float] = {}
    start = time.perf_counter()
    files = locate_tables(folder)
    partitions = partitions_for(estimate_rows(files["customers"]), chunk_customers)
    stages["estimate"] = time.perf_counter() - start
    documents = valid = checksum = 0
    first = None
    with tempfile.TemporaryDirectory(dir=ROOT / "bench-data") as work:
        chunks = prepared_chunks(files, Path(work) / "chunks", partitions, workers=workers)
        for chunk in chunks:
            if first is None:
                first = time.perf_counter()
            chunk.documents.documents.cast(pa.binary())  # what the spool does with them
            documents += len(chunk.documents)
            valid += chunk.validation.customers_valid
            checksum ^= _checksum(chunk.documents.customer_ids, chunk.fingerprints)
    stages["first chunk"] = (first or time.perf_counter()) - start
    return {
        "stages": stages,
        "documents": documents,
        "valid": valid,
        "checksum": checksum,
        "partitions": partitions,
    }


def _child(path: str, folder: str, chunk_customers: int, workers: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    start, cpu = time.perf_counter(), _cpu_seconds()
    with TreeMemory() as memory:
        if path == "baseline":
            result = _baseline(folder)
        elif path == "whole":
            result = _whole(folder)
        else:
            result = _chunked(folder, chunk_customers, workers)
    result["total_s"] = time.perf_counter() - start
    result["cpu_s"] = _cpu_seconds() - cpu
    result["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["worker_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["tree_rss_mib"] = memory.peak / 2**20
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths", default="whole,chunked", help="comma-separated")
    parser.add_argument("--chunk-customers", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from customer_sync.chunking.partitioner import DEFAULT_CHUNK_CUSTOMERS

    chunk_customers = args.chunk_customers or DEFAULT_CHUNK_CUSTOMERS
    if args.child:
        print(json.dumps(_child(args.child, args.folder, chunk_customers, args.workers)))
        return 0

    folder = ROOT / "bench-data" / f"{args.format}-{args.customers}-seed{args.seed}"
    if not all(
        (folder / f"{t}.{args.format}").exists() for t in ("customers", "accounts", "cards")
    ):
        from customer_sync.devtools.synthetic import write_synthetic_extract

        start = time.perf_counter()
        write_synthetic_extract(folder, args.customers, args.format, seed=args.seed)
        print(f"generated {folder} in {time.perf_counter() - start:.1f} s")
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20
    print(f"extract: {folder} ({size:,.0f} MiB, {args.format})")
    print(f"chunked: {chunk_customers:,} customers a chunk, {args.workers} workers")
    checksums = set()
    totals: dict[str, float] = {}
    for path in args.paths.split(","):
        command = [sys.executable, __file__, "--child", path, "--folder", str(folder)]
        command += ["--chunk-customers", str(chunk_customers), "--workers", str(args.workers)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in r["stages"].items())
        print(
            f"{path:<8} total {r['total_s']:6.1f} s  CPU {r['cpu_s']:6.1f} s  "
            f"peak RSS: process {r['rss_mib']:,.0f} MiB, worker {r['worker_rss_mib']:,.0f} MiB, "
            f"all at once {r['tree_rss_mib']:,.0f} MiB"
        )
        extra = f", {r['partitions']} chunks" if "partitions" in r else ""
        print(f"         stages (s): {stages}; documents {r['documents']:,}{extra}")
        totals[path] = r["total_s"]
        if r["checksum"] is not None:
            checksums.add(r["checksum"])
        else:
            nest_only = r["stages"]["dict nest+serialise"]
    if len(checksums) > 1 or len(totals) - ("baseline" in totals) > 1:
        print("same documents and fingerprints:", "yes" if len(checksums) == 1 else "NO")
    if "baseline" in totals:
        for path, total in totals.items():
            if path != "baseline":
                print(
                    f"{path}: {totals['baseline'] / total:.1f}x faster than the baseline's "
                    f"read + validate + dict nest ({totals['baseline']:.1f} s), "
                    f"{nest_only / total:.1f}x its dict nest alone ({nest_only:.1f} s) "
                    "(target: 5x)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
