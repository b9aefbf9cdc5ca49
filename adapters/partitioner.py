"""An extract too big for memory, split on disk into chunks of customers (the I/O side of
``transforms.routing``).

* **pass 1** (``spill_table``) streams a file in blocks: customer rows are bucketed by
  customer partition, account and card rows by account partition (of their account id),
  and the hashes of all customer ids are kept as a sorted presence index;
* **pass 2** (``route_account_partition``, one call per account partition, independent, so
  they can run in parallel) routes the account and card rows of one account partition to
  the customer partitions of their routing sets;
* **pass 3** (``read_chunk``) reads one customer partition: its customers and every
  account and card routed to it, with their original ``_row`` numbers, as an ``Extract``
  with the ``ChunkScope`` that ``transforms.validate.validate_extract`` needs.

``partition_extract`` runs passes 1 and 2: accounts and cards are read first, so they are
routed in the pool while the customers are read.

Spill files are Arrow IPC files in which record batch ``k`` holds the rows of bucket ``k``
(so no writer per partition is kept open, and a bucket is read zero-copy from a memory
map). They hold card data: the work folder is created owner-only (0700), every file 0600,
and ``remove_work_folder`` deletes it all.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from adapters.files import open_binary
from adapters.parquet_files import parquet_file
from adapters.readers import Rename, ignored_columns, iter_table_blocks, table_format
from schemas import contract
from schemas.columns import text_series
from schemas.records import Extract
from transforms.routing import (
    KEY_COLUMN,
    ChunkScope,
    Routes,
    account_keys,
    account_partitions,
    customer_partitions,
    route_accounts_and_cards,
)

DEFAULT_CHUNK_CUSTOMERS: Final = 50_000
"""Customers per chunk: a worker preparing one peaks at about 0.5 GB (1 GB at 100k), and
all processes together stay near 1.5 GB at any extract size."""
BLOCK_ROWS: Final = 250_000
"""Rows per block of pass 1 (each is bucketed on its own, into one file)."""
READ_ROWS: Final = 25_000
"""Rows read from a file at a time: the CSV reader's read-ahead grows with it (about
200 MB at 25k rows, 700 MB at 100k)."""
RAW_BLOCKS_AHEAD: Final = 16
"""Blocks of pass 1 read ahead of the workers bucketing them (they wait on disk, not in
memory; workers still starting up must not hold the reading back)."""
OWNED: Final = "_owned"
SHARED: Final = "_shared"
_COUNT_BYTES: Final = 8 << 20


def schema_of(table: str, stage: str = "raw") -> pa.Schema:
    """The spill schema of a table: its contract columns as text and ``_row``; in pass 1
    accounts and cards add their account id's hash (``KEY_COLUMN``); once routed they add
    whether the chunk owns the row and whether other chunks hold it too."""
    fields = [pa.field(name, pa.large_string()) for name in contract.COLUMNS[table]]
    fields.append(pa.field(contract.ROW_COLUMN, pa.int64()))
    if stage == "spilled" and table != "customers":
        fields.append(pa.field(KEY_COLUMN, pa.uint64()))
    if stage == "routed":
        fields += [pa.field(OWNED, pa.bool_()), pa.field(SHARED, pa.bool_())]
    return pa.schema(fields)


@dataclass(frozen=True)
class Spill:
    """One table after pass 1: its files (batch ``k`` of each holds bucket ``k``)."""

    table: str
    paths: tuple[Path, ...]
    rows: int


@dataclass(frozen=True)
class PartitionedExtract:
    """Passes 1 and 2 done: everything a chunk needs, on disk."""

    folder: Path
    partitions: int
    files: dict[str, str]
    ignored_columns: dict[str, tuple[str, ...]]
    rows_read: dict[str, int]
    customers: tuple[Path, ...]
    """Pass-1 files of the customers (batch ``k``: chunk ``k``)."""
    routed: dict[str, tuple[Path, ...]]
    """Accounts and cards: one file per account partition (batch ``k``: chunk ``k``)."""
    index: Path
    """Sorted distinct uint64 hashes of every customer id (``.npy``)."""


# --- how many chunks ------------------------------------------------------------------------


def estimate_rows(path: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """About how many data rows a file has: exact for Parquet (its footer), the number of
    line breaks for CSV (more than the rows when quoted cells span lines)."""
    if table_format(path) == "parquet":
        with parquet_file(path, storage_options) as parquet:
            return int(parquet.metadata.num_rows)
    breaks, last = 0, b"\n"
    with open_binary(path, storage_options) as stream:
        while block := stream.read(_COUNT_BYTES):
            breaks += block.count(b"\n")
            last = block[-1:]
    lines = breaks + (last != b"\n")  # the last line may have no break
    return max(lines - 1, 0)  # the header


def partitions_for(customers: int, chunk_customers: int) -> int:
    """How many chunks of at most about ``chunk_customers`` customers."""
    if chunk_customers < 1:
        raise ValueError(f"chunk_customers must be at least 1, not {chunk_customers}")
    return max(1, math.ceil(customers / chunk_customers))


# --- the work folder ------------------------------------------------------------------------


def make_work_folder(folder: Path) -> Path:
    """A new, empty, owner-only folder for spill files (its parents are created)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def remove_work_folder(folder: Path) -> None:
    """Delete the spill files and their folder (nothing happens when it is gone)."""
    shutil.rmtree(folder, ignore_errors=True)


def _private_writer(path: Path, schema: pa.Schema) -> tuple[Any, pa.ipc.RecordBatchFileWriter]:
    """An IPC file writer on a new file, created 0600 (then written by Arrow itself: a
    Python file object in between is four times slower)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    sink = pa.OSFile(str(path), "wb")
    return sink, pa.ipc.new_file(sink, schema)


def write_buckets(path: Path, table: pa.Table, buckets: npt.NDArray[np.int64], count: int) -> None:
    """An IPC file whose record batch ``k`` holds the rows of ``table`` in bucket ``k``
    (in their order), for ``k`` in ``0..count-1``."""
    order = np.argsort(buckets, kind="stable")
    write_sorted_buckets(path, table.take(pa.array(order)), np.bincount(buckets, minlength=count))


def write_sorted_buckets(path: Path, table: pa.Table, sizes: npt.NDArray[np.int64]) -> None:
    """Like ``write_buckets`` for a table already in bucket order, ``sizes[k]`` rows each."""
    batches = table.combine_chunks().to_batches()
    whole = batches[0] if batches else _empty_batch(table.schema)
    sink, writer = _private_writer(path, table.schema)
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
    with ExitStack() as stack:
        batches = []
        for path in paths:
            source = stack.enter_context(pa.memory_map(str(path), "r"))
            batches.append(pa.ipc.open_file(source).get_batch(bucket))
        table = pa.Table.from_batches(batches, schema=schema)
        # one copy in process memory, so the maps can close
        return table.combine_chunks() if table.num_rows else schema.empty_table()


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.record_batch([pa.array([], type=f.type) for f in schema], schema=schema)


# --- passes 1 and 2 ---------------------------------------------------------------------------


def partition_extract(
    files: Mapping[str, str],
    folder: Path,
    partitions: int,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
    block_rows: int = BLOCK_ROWS,
    pool: Executor | None = None,
) -> PartitionedExtract:
    """Passes 1 and 2 into ``folder`` (which must exist: ``make_work_folder``).

    Every header is checked first, so a file that cannot be used fails before the others
    are read (``InputError``, from the readers). With ``pool``, blocks are bucketed and
    account partitions routed in its workers while this process reads on: accounts and
    cards are read first, and routed as soon as they are bucketed, while the customers
    are read.
    """
    ignored = {}
    for table in contract.TABLES:
        extra = ignored_columns(files[table], table, rename, storage_options)
        if extra:
            ignored[table] = extra
    bucketing = _Bucketing(pool, partitions)
    routing: list[Future[dict[str, Path]]] = []
    accounts_and_cards = ("accounts", "cards")

    def route_when_bucketed() -> None:
        if pool is not None and not routing and bucketing.done(accounts_and_cards):
            routing.extend(
                pool.submit(route_account_partition, spills, folder, partitions, q)
                for q in range(partitions)
            )

    def spill(table: str) -> Spill:
        return spill_table(
            files[table],
            table,
            folder,
            bucketing,
            rename=rename,
            storage_options=storage_options,
            block_rows=block_rows,
            on_block=route_when_bucketed if table == "customers" else None,
        )

    spills = {table: spill(table) for table in accounts_and_cards}
    customers = spill("customers")
    if pool is None:
        routed = [route_account_partition(spills, folder, partitions, q) for q in range(partitions)]
    else:
        bucketing.wait(accounts_and_cards)
        route_when_bucketed()
        routed = [future.result() for future in routing]
    hashes = bucketing.finish()
    for done in spills.values():
        for path in done.paths:
            path.unlink()  # their routed copies hold the rows now: half the disk
    spills["customers"] = customers
    return PartitionedExtract(
        folder=folder,
        partitions=partitions,
        files=dict(files),
        ignored_columns=ignored,
        rows_read={t: spills[t].rows for t in contract.TABLES},
        customers=customers.paths,
        routed={t: tuple(r[t] for r in routed) for t in accounts_and_cards},
        index=write_index(folder / "customer-ids.npy", hashes),
    )


class _Bucketing:
    """Raw blocks of pass 1 bucketed by ``spill_block``: here, or in the pool (at most
    ``RAW_BLOCKS_AHEAD`` waiting, on disk); keeps the customers' id hashes."""

    def __init__(self, pool: Executor | None, partitions: int) -> None:
        self.pool = pool
        self.partitions = partitions
        self.pending: list[tuple[str, Future[npt.NDArray[np.uint64]]]] = []
        self.hashes: list[npt.NDArray[np.uint64]] = []

    def add(self, table: str, raw: Path, path: Path) -> None:
        if self.pool is None:
            self.hashes.append(spill_block(table, raw, path, self.partitions))
            return
        self.pending.append(
            (table, self.pool.submit(spill_block, table, raw, path, self.partitions))
        )
        waiting = []
        for _, future in self.pending:
            if not future.done():
                waiting.append(future)
            elif future.exception() is not None:
                future.result()  # a worker failed: stop reading now
        if len(waiting) > RAW_BLOCKS_AHEAD:
            waiting[0].result()

    def done(self, tables: tuple[str, ...]) -> bool:
        return all(future.done() for table, future in self.pending if table in tables)

    def wait(self, tables: tuple[str, ...]) -> None:
        for table, future in self.pending:
            if table in tables:
                future.result()  # raises what the worker raised

    def finish(self) -> npt.NDArray[np.uint64]:
        """The sorted distinct hashes of every customer id, once every block is done."""
        self.hashes += [future.result() for _, future in self.pending]
        self.pending = []
        return distinct_sorted(self.hashes)


def spill_table(
    path: str,
    table: str,
    folder: Path,
    bucketing: _Bucketing,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
    block_rows: int = BLOCK_ROWS,
    on_block: Callable[[], None] | None = None,
) -> Spill:
    """Pass 1 of one table: read, and handed to ``bucketing`` in raw blocks.

    The file is read ``READ_ROWS`` rows at a time (the CSV reader reads ahead, and holds
    more the bigger its blocks) and written as it comes into raw blocks of about
    ``block_rows`` rows. ``on_block`` is called after each read.
    """
    schema = schema_of(table)
    paths: list[Path] = []
    rows = 0
    raw: Path | None = None
    sink: Any = None
    writer: Any = None
    held = 0

    def close() -> None:
        nonlocal writer, held
        writer.close()
        sink.close()
        writer, held = None, 0
        assert raw is not None
        paths.append(folder / f"{table}-{len(paths):05d}.arrow")
        bucketing.add(table, raw, paths[-1])

    frames = iter_table_blocks(
        path, table, min(READ_ROWS, block_rows), rename=rename, storage_options=storage_options
    )
    try:
        for frame in frames:
            block = _arrow_block(frame, schema)
            del frame
            if writer is None:
                raw = folder / f"{table}-{len(paths):05d}.raw.arrow"
                sink, writer = _private_writer(raw, schema)
            writer.write_table(block)
            held += block.num_rows
            rows += block.num_rows
            if held >= block_rows:
                close()
            if on_block is not None:
                on_block()
        if writer is not None:
            close()
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    pa.default_memory_pool().release_unused()
    return Spill(table, tuple(paths), rows)


def spill_block(table: str, raw: Path, path: Path, partitions: int) -> npt.NDArray[np.uint64]:
    """Bucket one raw block of pass 1 (removed once done) into ``path``; for customers,
    return their ids' hashes."""
    with pa.memory_map(str(raw), "r") as source:
        block = pa.ipc.open_file(source).read_all()
    raw.unlink()
    rows = np.asarray(block.column(contract.ROW_COLUMN), dtype=np.int64)
    if table == "customers":
        buckets, present = customer_partitions(block.column("sourceCustomerId"), rows, partitions)
        write_buckets(path, block, buckets, partitions)
        return present
    hashes, has_id = account_keys(block)
    keys = pa.array(hashes, pa.uint64(), mask=~has_id)
    block = block.append_column(KEY_COLUMN, keys)
    write_buckets(path, block, account_partitions(hashes, has_id, rows, partitions), partitions)
    return np.zeros(0, dtype=np.uint64)


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


def _arrow_block(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A raw text frame as an Arrow table of the spill schema."""
    columns = [pa.array(frame[f.name], from_pandas=True) for f in schema]
    return pa.Table.from_arrays(
        [c.cast(f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def route_account_partition(
    spills: Mapping[str, Spill], folder: Path, partitions: int, partition: int
) -> dict[str, Path]:
    """Pass 2 for one account partition: its accounts and cards (``spills``), routed to
    the customer partitions (one file per table, batch ``k`` for chunk ``k``)."""
    accounts = read_bucket(spills["accounts"].paths, partition, schema_of("accounts", "spilled"))
    cards = read_bucket(spills["cards"].paths, partition, schema_of("cards", "spilled"))
    account_routes, card_routes = route_accounts_and_cards(accounts, cards, partitions)
    written = {}
    for table, rows, routes in (
        ("accounts", accounts, account_routes),
        ("cards", cards, card_routes),
    ):
        path = folder / f"routed-{table}-{partition:05d}.arrow"
        _write_routed(path, rows, routes, partitions)
        written[table] = path
    return written


def _write_routed(path: Path, table: pa.Table, routes: Routes, partitions: int) -> None:
    """The routed copies of ``table``'s rows, bucketed by destination, with their flags."""
    order = np.argsort(routes.destinations, kind="stable")
    taken = table.drop_columns([KEY_COLUMN]).take(pa.array(routes.rows[order]))
    taken = taken.append_column(OWNED, pa.array(routes.owned[order]))
    taken = taken.append_column(SHARED, pa.array(routes.shared[order]))
    write_sorted_buckets(path, taken, np.bincount(routes.destinations, minlength=partitions))


# --- pass 3 ---------------------------------------------------------------------------------

_INDEXES: dict[Path, npt.NDArray[np.uint64]] = {}


def customer_index(path: Path) -> npt.NDArray[np.uint64]:
    """The presence index, memory-mapped (read once per process and path)."""
    if path not in _INDEXES:
        _INDEXES.clear()
        index: npt.NDArray[np.uint64] = np.load(path, mmap_mode="r")
        _INDEXES[path] = index
    return _INDEXES[path]


def read_chunk(extract: PartitionedExtract, partition: int) -> tuple[Extract, ChunkScope]:
    """Pass 3: one chunk of customers with every account and card routed to it."""
    customers = read_bucket(extract.customers, partition, schema_of("customers"))
    tables = {"customers": customers}
    owned, shared = {}, {}
    for table in ("accounts", "cards"):
        rows = read_bucket(extract.routed[table], partition, schema_of(table, "routed"))
        rows = rows.take(pa.array(np.argsort(np.asarray(rows.column(contract.ROW_COLUMN)))))
        owned[table] = np.asarray(rows.column(OWNED), dtype=bool)
        shared[table] = np.asarray(rows.column(SHARED), dtype=bool)
        tables[table] = rows
    frames = {t: _raw_frame(tables[t], t) for t in contract.TABLES}
    scope = ChunkScope(
        partition=partition,
        partitions=extract.partitions,
        customer_hashes=customer_index(extract.index),
        owned=owned,
        shared=shared,
    )
    chunk = Extract(
        customers=frames["customers"],
        accounts=frames["accounts"],
        cards=frames["cards"],
        files=dict(extract.files),
        ignored_columns=dict(extract.ignored_columns),
    )
    return chunk, scope


def _raw_frame(table: pa.Table, name: str) -> pd.DataFrame:
    index = pd.RangeIndex(table.num_rows)
    columns = {c: text_series(table.column(c), index) for c in contract.COLUMNS[name]}
    frame = pd.DataFrame(columns, index=index)
    frame[contract.ROW_COLUMN] = np.asarray(table.column(contract.ROW_COLUMN), dtype=np.int64)
    return frame
