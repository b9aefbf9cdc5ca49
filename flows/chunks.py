"""Preparing an extract a chunk of customers at a time, on both cores.

``prepared_chunks`` runs the passes of ``adapters.partitioner`` (pass 1 in this process,
passes 2 and 3 in a pool of worker processes) and yields one ``PreparedChunk`` per chunk:
its validation and its customers' documents and fingerprints, built in the worker, so the
parent only plans against the ledger and spools. At most one chunk per worker is in
flight, and the parent holds the chunk it is spooling: memory is set by the chunk size.

Workers are started with ``spawn`` (a forked copy of a process running Prefect's threads
is not safe), import no Prefect, and never import the caller's ``__main__`` (they only run
this package's functions), so a script without an ``if __name__ == "__main__":`` guard
works, and does not run again in each worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import types
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from adapters.partitioner import (
    PartitionedExtract,
    make_work_folder,
    partitioned,
    read_chunk,
    remove_work_folder,
    route_account_partition,
    spill_extract,
    write_sorted_buckets,
)
from adapters.readers import Rename
from transforms.fast_nest import CustomerDocuments
from transforms.fingerprint import fingerprinted_documents
from transforms.validate import Validation, validate_extract

log = logging.getLogger(__name__)

DEFAULT_WORKERS: Final = 2


@dataclass(frozen=True)
class PreparedChunk:
    """One chunk, validated, nested and fingerprinted.

    ``validation`` keeps its counts, rejects and held-back customers; its valid frames are
    left empty (the documents are built from them already).
    """

    validation: Validation
    documents: CustomerDocuments
    fingerprints: pd.Series
    """Fingerprint per valid customer id (``transforms.fingerprint``)."""


def prepare_validation(validation: Validation) -> PreparedChunk:
    """The documents and fingerprints of a validated chunk (the worker's share of the work)."""
    documents, fingerprints = fingerprinted_documents(
        validation.customers, validation.accounts, validation.cards
    )
    return PreparedChunk(_light(validation), documents, fingerprints)


def _light(validation: Validation) -> Validation:
    """The validation without its valid frames."""
    return dataclasses.replace(
        validation,
        customers=validation.customers.iloc[:0],
        accounts=validation.accounts.iloc[:0],
        cards=validation.cards.iloc[:0],
    )


_DOCUMENTS_SCHEMA: Final = pa.schema(
    [
        ("customer_id", pa.large_string()),
        ("fingerprint", pa.large_string()),
        ("document", pa.large_binary()),
    ]
)


def prepare_partition(extract: PartitionedExtract, partition: int) -> tuple[Validation, Path]:
    """Pass 3 for one chunk, in a worker: read it, validate it in its scope, nest and
    fingerprint it. The documents go to a file of the work folder (they would otherwise
    wait in the parent's memory until it gets to them); the validation comes back."""
    chunk, scope = read_chunk(extract, partition)
    validation = validate_extract(chunk, scope)
    del chunk
    prepared = prepare_validation(validation)
    ids = prepared.documents.customer_ids
    table = pa.table(
        [
            pa.array(ids, pa.large_string()),
            pa.array(prepared.fingerprints.loc[ids].to_numpy(), pa.large_string()),
            pa.array(prepared.documents.documents, pa.large_binary()),
        ],
        schema=_DOCUMENTS_SCHEMA,
    )
    path = extract.spilled.folder / f"documents-{partition:05d}.arrow"
    write_sorted_buckets(path, table, np.array([table.num_rows]))
    return prepared.validation, path


def _load(validation: Validation, path: Path) -> PreparedChunk:
    """A chunk prepared by a worker, its documents read back (and their file removed)."""
    with pa.memory_map(str(path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    path.unlink()
    ids = table.column("customer_id").to_pylist()
    documents = table.column("document").to_numpy().tolist()
    fingerprints = pd.Series(table.column("fingerprint").to_numpy(), index=ids, dtype=object)
    return PreparedChunk(validation, CustomerDocuments(ids, documents), fingerprints)


def _start_worker() -> None:
    # two workers on two cores: Arrow's own thread pool would only make them compete
    pa.set_cpu_count(1)
    # jemalloc gives memory back between chunks; mimalloc (the default) keeps ~30% more
    if "jemalloc" in pa.supported_memory_backends():
        pa.set_memory_pool(pa.jemalloc_memory_pool())


class _PackageProcess(SpawnProcess):
    """A spawned process that does not re-import the parent's ``__main__``.

    ``spawn`` normally runs the parent's main script again in the child (minus its
    ``__main__`` block); the workers only need this package, and an unguarded script run
    again would start another sync. While the child is launched, ``__main__`` is swapped
    for an empty module, so the child is told of no main module to import.
    """

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            return SpawnProcess._Popen(process_obj)
        finally:
            sys.modules["__main__"] = main


class _PackageContext(SpawnContext):
    Process = _PackageProcess


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes."""
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=_PackageContext(), initializer=_start_worker
    )


def prepared_chunks(
    files: Mapping[str, str],
    work_folder: Path,
    partitions: int,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
) -> Iterator[PreparedChunk]:
    """The extract as ``partitions`` prepared chunks of customers.

    Spill files go to ``work_folder`` (created owner-only; it must not exist) and are
    removed when the iteration ends or stops. ``workers=1`` runs everything here.
    """
    make_work_folder(work_folder)
    pool = worker_pool(workers) if workers > 1 else None
    try:
        started = time.perf_counter()
        spilled = spill_extract(
            files,
            work_folder,
            partitions,
            rename=rename,
            storage_options=storage_options,
            pool=pool,
        )
        rows = ", ".join(f"{t} {n:,}" for t, n in spilled.rows_read.items())
        log.info(
            "Read %s into %d chunks in %.1f s", rows, partitions, time.perf_counter() - started
        )
        for table, columns in spilled.ignored_columns.items():
            log.warning("Ignored unknown columns in %s: %s", table, ", ".join(columns))
        started = time.perf_counter()
        if pool is None:
            routed = [route_account_partition(spilled, q) for q in range(partitions)]
        else:
            routed = list(
                pool.map(route_account_partition, [spilled] * partitions, range(partitions))
            )
        extract = partitioned(spilled, routed)
        log.info(
            "Routed accounts and cards to their chunks in %.1f s", time.perf_counter() - started
        )
        if pool is None:
            for partition in range(partitions):
                yield _load(*prepare_partition(extract, partition))
        else:
            yield from _bounded(pool, extract, workers)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        remove_work_folder(work_folder)


def _bounded(
    pool: Executor, extract: PartitionedExtract, in_flight: int
) -> Iterator[PreparedChunk]:
    """Every chunk from the pool, in order, with at most ``in_flight`` submitted at a time."""
    todo = iter(range(extract.partitions))
    pending: deque[Future[tuple[Validation, Path]]] = deque()
    for partition in todo:
        pending.append(pool.submit(prepare_partition, extract, partition))
        if len(pending) >= in_flight:
            break
    while pending:
        validation, path = pending.popleft().result()
        following = next(todo, None)
        if following is not None:  # keep the workers busy while this chunk is spooled
            pending.append(pool.submit(prepare_partition, extract, following))
        yield _load(validation, path)


def default_workers() -> int:
    """One worker per core, at most ``DEFAULT_WORKERS``."""
    return max(1, min(DEFAULT_WORKERS, os.cpu_count() or 1))
