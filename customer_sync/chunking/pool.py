"""Preparing an extract a chunk of customers at a time, on both cores.

``prepared_chunks`` runs the passes of ``chunking.partitioner`` (files are read in this
process; blocks are bucketed, accounts routed and chunks prepared in a pool of worker
processes) and yields one ``PreparedChunk`` per chunk: its validation and its customers'
documents and fingerprints, built in the worker, so the parent only plans against the
ledger and spools. One chunk per worker is in flight, so the parent holds at most three
prepared chunks (the one it spools and one from each worker): memory is set by the chunk
size, not the extract's.

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
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

from customer_sync.adapters.readers import Rename
from customer_sync.chunking.partitioner import (
    PartitionedExtract,
    partition_extract,
    read_chunk,
)
from customer_sync.chunking.spill_files import make_work_folder, remove_work_folder
from customer_sync.transforms.fast_nest import DocumentArrays
from customer_sync.transforms.fingerprint import fingerprinted_document_arrays
from customer_sync.transforms.validate import Validation, validate_extract

log = logging.getLogger(__name__)

DEFAULT_WORKERS: Final = 2
WHOLE_CUSTOMERS: Final = 150_000
"""Extracts up to this many customers are prepared whole, in the calling process: as fast
as in chunks or faster (no worker start-up, no spill files), and in no more memory (about
1.2 GB at 150k; in chunks all processes together take 1.1 to 1.5 GB)."""
NEST_ROWS: Final = 25_000
"""Customers whose documents are joined at a time: at 100k a chunk's peak is 150 MB lower
than in one go, for the same time."""


@dataclass(frozen=True)
class PreparedChunk:
    """One chunk, validated, nested and fingerprinted.

    ``validation`` keeps its counts, rejects and held-back customers; its valid frames are
    left empty (the documents are built from them already). The documents and their
    fingerprints stay Arrow arrays all the way to the spool: a worker sends them back as
    a few buffers, not a million Python objects.
    """

    validation: Validation
    documents: DocumentArrays
    fingerprints: pa.StringArray
    """The fingerprint of each document (``transforms.fingerprint``), aligned with it."""


def prepare_validation(validation: Validation) -> PreparedChunk:
    """The documents and fingerprints of a validated chunk (the worker's share of the work)."""
    documents, fingerprints = fingerprinted_document_arrays(
        validation.customers, validation.accounts, validation.cards, chunk_rows=NEST_ROWS
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


def prepare_partition(extract: PartitionedExtract, partition: int) -> PreparedChunk:
    """Pass 3 for one chunk, in a worker: read it, validate it in its scope, nest and
    fingerprint it. (Sent back pickled: about three times cheaper than through a file.)"""
    chunk, scope = read_chunk(extract, partition)
    validation = validate_extract(chunk, scope)
    del chunk
    return prepare_validation(validation)


@dataclass(frozen=True)
class _ChunkOnDisk:
    """What a worker sends back: the validation, and where it wrote the documents."""

    validation: Validation
    path: Path


_DOCUMENTS_SCHEMA: Final = pa.schema(
    [
        ("customer_id", pa.large_string()),
        ("document", pa.large_binary()),
        ("fingerprint", pa.string()),
    ]
)


def _prepare_partition_to_disk(extract: PartitionedExtract, partition: int) -> _ChunkOnDisk:
    """Pass 3 in a worker, its documents written to an owner-only Arrow file in the work
    folder: the parent maps it instead of unpickling it (a pickle through the pipe copies
    each chunk's ~60 MB four times; about 3 s of CPU at 1M customers)."""
    chunk = prepare_partition(extract, partition)
    path = extract.folder / f"documents-{partition:05d}.arrow"
    table = pa.table(
        [chunk.documents.customer_ids, chunk.documents.documents, chunk.fingerprints],
        schema=_DOCUMENTS_SCHEMA,
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return _ChunkOnDisk(chunk.validation, path)


def _from_disk(result: _ChunkOnDisk) -> PreparedChunk:
    """The chunk as the worker prepared it, its arrays mapped from the file (which is
    unlinked at once: the mapping keeps the data until the arrays go)."""
    with pa.memory_map(str(result.path), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    result.path.unlink()
    ids, documents, fingerprints = (
        pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)
        for column in table.columns
    )
    return PreparedChunk(result.validation, DocumentArrays(ids, documents), fingerprints)


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
    """A pool of ``workers`` spawned processes, started now (a worker takes a second or
    two to import its libraries: that overlaps with the reading of the first blocks)."""
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=_PackageContext(), initializer=_start_worker
    )
    for _ in range(workers):
        pool.submit(int)  # each submission starts a worker while none is idle
    return pool


def prepared_chunks(
    files: Mapping[str, str],
    work_folder: Path,
    partitions: int,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS,
    only: Sequence[int] | None = None,
    split: Callable[..., PartitionedExtract] = partition_extract,
) -> Generator[PreparedChunk, None, None]:
    """The extract as ``partitions`` prepared chunks of customers (only the chunks numbered
    in ``only``, when given: a shard's share).

    Spill files go to ``work_folder`` (created owner-only; it must not exist) and are
    removed when the iteration ends or stops. ``workers=1`` runs everything here.
    ``split`` is ``partition_extract`` or a wrapper of it (the flow's ``read-extract``
    task).
    """
    wanted = list(range(partitions)) if only is None else list(only)
    make_work_folder(work_folder)
    pool = worker_pool(workers) if workers > 1 else None
    try:
        started = time.perf_counter()
        extract = split(
            files,
            work_folder,
            partitions,
            rename=rename,
            storage_options=storage_options,
            pool=pool,
        )
        rows = ", ".join(f"{t} {n:,}" for t, n in extract.rows_read.items())
        log.info(
            "Read %s and split them into %d chunks in %.1f s",
            rows,
            partitions,
            time.perf_counter() - started,
        )
        for table, columns in extract.ignored_columns.items():
            log.warning("Ignored unknown columns in %s: %s", table, ", ".join(columns))
        if pool is None:
            for partition in wanted:
                yield prepare_partition(extract, partition)
        else:
            yield from _bounded(pool, extract, wanted, workers)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        remove_work_folder(work_folder)


def _bounded(
    pool: Executor, extract: PartitionedExtract, partitions: Sequence[int], in_flight: int
) -> Iterator[PreparedChunk]:
    """The chunks ``partitions`` from the pool, in order, with at most ``in_flight``
    submitted at a time (so at most ``in_flight + 1`` prepared chunks are in this process
    at once)."""
    todo = iter(partitions)
    pending: deque[Future[_ChunkOnDisk]] = deque()
    for partition in todo:
        pending.append(pool.submit(_prepare_partition_to_disk, extract, partition))
        if len(pending) >= in_flight:
            break
    while pending:
        chunk = _from_disk(pending.popleft().result())
        following = next(todo, None)
        if following is not None:  # keep the workers busy while this chunk is spooled
            pending.append(pool.submit(_prepare_partition_to_disk, extract, following))
        yield chunk
        del chunk


def default_workers() -> int:
    """One worker per core, at most ``DEFAULT_WORKERS``."""
    return max(1, min(DEFAULT_WORKERS, os.cpu_count() or 1))
