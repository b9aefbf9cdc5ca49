"""The spill files of a partitioned extract: their schemas, and how buckets are written
and read.

A spill file is an Arrow IPC file whose record batch ``k`` holds the rows of bucket ``k``
(so no writer per partition is kept open, and a bucket is read zero-copy from a memory
map). They hold card data: the work folder is created owner-only (0700), every file 0600,
and ``remove_work_folder`` deletes it all. ``chunking/partitioner.py`` says what goes in
them, ``chunking/route_steps.py`` writes them in the pool's workers.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.adapters.readers import text_table_schema
from customer_sync.schemas import contract

OWNED: Final = "_owned"
SHARED: Final = "_shared"
KEY_COLUMN: Final = "_key"
"""Routing keys: the hash of the stripped account id (null without one)..."""
POS: Final = "_pos"
"""... the row's position in its raw block..."""
PRIMARY: Final = "_primary"
"""... the partition of an account's primary holder (``NO_PARTITION`` without)..."""
HOLDERS: Final = "_holders"
"""... those of its other listed holders..."""
HOLDER: Final = "_holder"
"""... and that of a card's holder."""
BLOCK: Final = "_block"
DESTINATION: Final = "_destination"


def schema_of(table: str, stage: str = "raw") -> pa.Schema:
    """The spill schema of a table: its contract columns as text and ``_row``; once routed,
    accounts and cards add whether the chunk owns the row and whether other chunks hold it
    too."""
    schema = text_table_schema(table)
    if stage == "routed":
        schema = schema.append(pa.field(OWNED, pa.bool_())).append(pa.field(SHARED, pa.bool_()))
    return schema


def keys_schema(table: str) -> pa.Schema:
    """Routing keys of account or card rows (``keys_table``)."""
    fields = [
        pa.field(POS, pa.int32()),
        pa.field(KEY_COLUMN, pa.uint64()),
        pa.field(contract.ROW_COLUMN, pa.int64()),
    ]
    if table == "accounts":
        fields += [pa.field(PRIMARY, pa.int32()), pa.field(HOLDERS, pa.list_(pa.int32()))]
    else:
        fields.append(pa.field(HOLDER, pa.int32()))
    return pa.schema(fields)


def routes_schema() -> pa.Schema:
    """Where rows go (``route_account_partition``): one entry per row and destination."""
    return pa.schema(
        [
            pa.field(BLOCK, pa.int32()),
            pa.field(POS, pa.int32()),
            pa.field(DESTINATION, pa.int32()),
            pa.field(OWNED, pa.bool_()),
            pa.field(SHARED, pa.bool_()),
        ]
    )


@dataclass(frozen=True)
class Spill:
    """One table after pass 1: its raw blocks (``bucketed_path``: what pass 1 made of
    each, batch ``k`` holding bucket ``k``)."""

    table: str
    paths: tuple[Path, ...]
    rows: int


def make_work_folder(folder: Path) -> Path:
    """A new, empty, owner-only folder for spill files (its parents are created)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def remove_work_folder(folder: Path) -> None:
    """Delete the spill files and their folder (nothing happens when it is gone)."""
    shutil.rmtree(folder, ignore_errors=True)


def private_writer(path: Path, schema: pa.Schema) -> tuple[Any, pa.ipc.RecordBatchFileWriter]:
    """An IPC file writer on a new file, created 0600 (then written by Arrow itself: a
    Python file object in between is four times slower)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    sink = pa.OSFile(str(path), "wb")
    return sink, pa.ipc.new_file(sink, schema)


def write_buckets(path: Path, table: pa.Table, buckets: npt.NDArray[np.int64], count: int) -> None:
    """An IPC file whose record batch ``k`` holds the rows of ``table`` in bucket ``k``
    (in their order), for ``k`` in ``0..count-1``."""
    # Arrow's stable sort of small integers is a counting sort: 15x quicker than numpy's
    order = pc.sort_indices(pa.array(buckets))
    write_sorted_buckets(path, table.take(order), np.bincount(buckets, minlength=count))


def write_sorted_buckets(path: Path, table: pa.Table, sizes: npt.NDArray[np.int64]) -> None:
    """Like ``write_buckets`` for a table already in bucket order, ``sizes[k]`` rows each."""
    batches = table.combine_chunks().to_batches()
    whole = batches[0] if batches else _empty_batch(table.schema)
    sink, writer = private_writer(path, table.schema)
    try:
        start = 0
        for size in sizes.tolist():
            writer.write_batch(whole.slice(start, size))
            start += size
    finally:
        writer.close()
        sink.close()


def read_bucket(paths: tuple[Path, ...], bucket: int, schema: pa.Schema) -> pa.Table:
    """Bucket ``bucket`` of every file, as one table (copied out of the memory maps)."""
    return read_bucket_sized(paths, bucket, schema)[0]


def read_bucket_sized(
    paths: tuple[Path, ...], bucket: int, schema: pa.Schema
) -> tuple[pa.Table, list[int]]:
    """``read_bucket``, and how many of its rows came from each file."""
    with ExitStack() as stack:
        batches = []
        for path in paths:
            source = stack.enter_context(pa.memory_map(str(path), "r"))
            batches.append(pa.ipc.open_file(source).get_batch(bucket))
        table = pa.Table.from_batches(batches, schema=schema)
        sizes = [batch.num_rows for batch in batches]
        # one copy in process memory, so the maps can close
        return (table.combine_chunks() if table.num_rows else schema.empty_table()), sizes


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.record_batch([pa.array([], type=f.type) for f in schema], schema=schema)


def distinct_sorted(parts: list[npt.NDArray[np.uint64]]) -> npt.NDArray[np.uint64]:
    """The distinct values of all parts, sorted."""
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    values.sort()
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    distinct: npt.NDArray[np.uint64] = values[keep]
    return distinct


def write_index(path: Path, hashes: npt.NDArray[np.uint64]) -> Path:
    """The presence index (sorted distinct hashes) as an owner-only ``.npy`` file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as sink:
        np.save(sink, hashes)
    return path


_INDEXES: dict[Path, npt.NDArray[np.uint64]] = {}


def customer_index(path: Path) -> npt.NDArray[np.uint64]:
    """The presence index, memory-mapped (read once per process and path)."""
    if path not in _INDEXES:
        _INDEXES.clear()
        index: npt.NDArray[np.uint64] = np.load(path, mmap_mode="r")
        _INDEXES[path] = index
    return _INDEXES[path]
