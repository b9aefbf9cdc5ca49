"""An extract too big for memory, split on disk into chunks of customers (the I/O side of
``customer_sync.chunking.routing``).

* **pass 1** (``spill_table``) streams a file in raw blocks (Arrow text, straight from the
  reader); per block (``spill_block``), customer rows are bucketed by customer partition
  and the hashes of their ids kept as a sorted presence index, while of account and card
  rows only their routing keys (hashes and partitions, no text) are bucketed by account
  partition (of their account id);
* **pass 2** routes accounts and cards from their keys alone: ``route_account_partition``
  (one call per account partition, independent) says where each row of each raw block
  goes, then ``route_block`` (one call per raw block) copies the block's rows to their
  chunks. Each row's text is moved once, and a chunk's rows come out in ``_row`` order;
* **pass 3** (``read_chunk``) reads one customer partition: its customers and every
  account and card routed to it, with their original ``_row`` numbers, as an ``Extract``
  with the ``ChunkScope`` that ``customer_sync.transforms.validate.validate_extract`` needs.

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
import pyarrow.compute as pc

from customer_sync.adapters.files import READ_ERRORS, not_a_regular_file, open_binary, unreadable
from customer_sync.adapters.parquet_files import parquet_file
from customer_sync.adapters.readers import (
    Rename,
    ignored_columns,
    iter_text_tables,
    table_format,
    text_table_schema,
)
from customer_sync.chunking.routing import (
    AccountKeys,
    CardKeys,
    ChunkScope,
    account_partitions,
    account_route_keys,
    card_route_keys,
    customer_partitions,
    route_keys,
)
from customer_sync.schemas import contract
from customer_sync.schemas.columns import text_series
from customer_sync.schemas.records import Extract

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
_COUNT_BYTES: Final = 8 << 20


def schema_of(table: str, stage: str = "raw") -> pa.Schema:
    """The spill schema of a table: its contract columns as text and ``_row``; once routed,
    accounts and cards add whether the chunk owns the row and whether other chunks hold it
    too."""
    schema = text_table_schema(table)
    if stage == "routed":
        schema = schema.append(pa.field(OWNED, pa.bool_())).append(pa.field(SHARED, pa.bool_()))
    return schema


def _keys_schema(table: str) -> pa.Schema:
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


def _routes_schema() -> pa.Schema:
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


@dataclass(frozen=True)
class PartitionedExtract:
    """Passes 1 and 2 done: everything a chunk needs, on disk."""

    folder: Path
    partitions: int
    files: dict[str, str]
    ignored_columns: dict[str, tuple[str, ...]]
    rows_read: dict[str, int]
    customers: tuple[Path, ...]
    """Pass-1 files of the customers, one per block (batch ``k``: chunk ``k``)."""
    routed: dict[str, tuple[Path, ...]]
    """Accounts and cards: one file per raw block (batch ``k``: chunk ``k``)."""
    index: Path
    """Sorted distinct uint64 hashes of every customer id (``.npy``)."""


# --- how many chunks ------------------------------------------------------------------------


def estimate_rows(path: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """About how many data rows a file has: exact for Parquet (its footer), the number of
    line breaks for CSV (more than the rows when quoted cells span lines)."""
    if table_format(path) == "parquet":
        with parquet_file(path, storage_options) as parquet:
            return int(parquet.metadata.num_rows)
    refused = not_a_regular_file(path, storage_options)  # a FIFO would block this for ever
    if refused is not None:
        raise refused
    breaks, last = 0, b"\n"
    try:
        with open_binary(path, storage_options) as stream:
            while block := stream.read(_COUNT_BYTES):
                breaks += block.count(b"\n")
                last = block[-1:]
    except READ_ERRORS as error:  # a truncated .gz: one line, not a traceback
        raise unreadable(path, error) from error
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
    # Arrow's stable sort of small integers is a counting sort: 15x quicker than numpy's
    order = pc.sort_indices(pa.array(buckets))
    write_sorted_buckets(path, table.take(order), np.bincount(buckets, minlength=count))


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
    are read (``InputError``, from the readers). With ``pool``, blocks are keyed, account
    partitions routed and blocks of accounts and cards moved to their chunks in its workers
    while this process reads on: accounts and cards are read first, and routed as soon as
    they are keyed, while the customers are read.
    """
    ignored = {}
    for table in contract.TABLES:
        extra = ignored_columns(files[table], table, rename, storage_options)
        if extra:
            ignored[table] = extra
    bucketing = _Bucketing(pool, partitions)
    accounts_and_cards = ("accounts", "cards")
    spills: dict[str, Spill] = {}
    routing = _Routing(pool, folder, partitions)

    def advance() -> None:
        if not routing.started and bucketing.done(accounts_and_cards):
            routing.start(spills)
        routing.advance()

    def spill(table: str) -> Spill:
        return spill_table(
            files[table],
            table,
            folder,
            bucketing,
            rename=rename,
            storage_options=storage_options,
            block_rows=block_rows,
            on_block=advance if table == "customers" else None,
        )

    for table in accounts_and_cards:
        spills[table] = spill(table)
    customers = spill("customers")
    bucketing.wait(accounts_and_cards)
    if not routing.started:
        routing.start(spills)
    routed = routing.finish()
    hashes = bucketing.finish()
    spills["customers"] = customers
    return PartitionedExtract(
        folder=folder,
        partitions=partitions,
        files=dict(files),
        ignored_columns=ignored,
        rows_read={t: spills[t].rows for t in contract.TABLES},
        customers=tuple(bucketed_path(raw) for raw in customers.paths),
        routed=routed,
        index=write_index(folder / "customer-ids.npy", hashes),
    )


class _Bucketing:
    """Raw blocks of pass 1 handed to ``spill_block``: here, or in the pool (at most
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


class _Routing:
    """Pass 2 of accounts and cards, in two steps that each wait for the whole previous
    one: ``route_account_partition`` per account partition, then ``route_block`` per
    block (here, or in the pool, as their inputs are complete)."""

    def __init__(self, pool: Executor | None, folder: Path, partitions: int) -> None:
        self.pool = pool
        self.folder = folder
        self.partitions = partitions
        self.started = False
        self.spills: dict[str, Spill] = {}
        self.routes: list[Future[dict[str, Path]]] = []
        self.moves: dict[str, list[Future[Path]]] = {}

    def start(self, spills: Mapping[str, Spill]) -> None:
        """Route every account partition (the keys of every block are written)."""
        self.started = True
        self.spills = {t: spills[t] for t in ("accounts", "cards")}
        args = (self.spills, self.folder, self.partitions)
        self.routes = [self._run(route_account_partition, *args, q) for q in range(self.partitions)]
        self.advance()

    def advance(self) -> None:
        """Move each block to its chunks once every account partition is routed."""
        if not self.started or self.moves or not all(f.done() for f in self.routes):
            return
        routes = [future.result() for future in self.routes]  # raises what a worker raised
        for table, spill in self.spills.items():
            paths = tuple(r[table] for r in routes)
            self.moves[table] = [
                self._run(route_block, table, block, paths, self.partitions)
                for block in range(len(spill.paths))
            ]

    def finish(self) -> dict[str, tuple[Path, ...]]:
        """Every block of accounts and cards, moved to its chunks (batch ``k``: chunk ``k``)."""
        for future in self.routes:
            future.result()
        self.advance()
        moved = {t: tuple(f.result() for f in futures) for t, futures in self.moves.items()}
        for future in self.routes:
            for path in future.result().values():
                path.unlink(missing_ok=True)  # the blocks hold the rows now
        return moved

    def _run(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        if self.pool is not None:
            return self.pool.submit(function, *args)
        done: Future[Any] = Future()
        done.set_result(function(*args))
        return done


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
    ``block_rows`` rows. ``on_block`` is called after each read. The paths returned are
    those ``spill_block`` writes (customers bucketed; keys of accounts and cards).
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
        paths.append(raw)
        bucketing.add(table, raw, bucketed_path(raw))

    blocks = iter_text_tables(
        path, table, min(READ_ROWS, block_rows), rename=rename, storage_options=storage_options
    )
    try:
        for block in blocks:
            if writer is None:
                raw = folder / f"{table}-{len(paths):05d}.block.arrow"
                sink, writer = _private_writer(raw, schema)
            writer.write_table(block)
            held += block.num_rows
            rows += block.num_rows
            del block
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


def bucketed_path(raw: Path) -> Path:
    """Where ``spill_block`` writes what it makes of the raw block ``raw``."""
    suffix = ".arrow" if raw.name.startswith("customers") else ".keys.arrow"
    return raw.with_name(raw.name.replace(".block.arrow", suffix))


def spill_block(table: str, raw: Path, path: Path, partitions: int) -> npt.NDArray[np.uint64]:
    """One raw block of pass 1: customers are bucketed by partition into ``path`` (the raw
    block is removed) and their ids' hashes returned; of accounts and cards only the
    routing keys are written, bucketed by account partition (the rows wait in the raw
    block until they are routed: moved once, not twice)."""
    with pa.memory_map(str(raw), "r") as source:
        block = pa.ipc.open_file(source).read_all()
    rows = np.asarray(block.column(contract.ROW_COLUMN), dtype=np.int64)
    if table == "customers":
        raw.unlink()
        buckets, present = customer_partitions(block.column("sourceCustomerId"), rows, partitions)
        write_buckets(path, block, buckets, partitions)
        return present
    keys = keys_table(block, table, partitions)
    buckets = account_partitions(
        np.asarray(keys.column(KEY_COLUMN).fill_null(0), dtype=np.uint64),
        np.asarray(keys.column(KEY_COLUMN).is_valid(), dtype=bool),
        rows,
        partitions,
    )
    write_buckets(path, keys, buckets, partitions)
    return np.zeros(0, dtype=np.uint64)


def keys_table(block: pa.Table, table: str, partitions: int) -> pa.Table:
    """The routing keys of a block of accounts or cards, one row per row (``_pos``: its
    position in the block)."""
    positions = pa.array(np.arange(block.num_rows, dtype=np.int32))
    if table == "accounts":
        accounts = account_route_keys(block, partitions)
        counts = np.bincount(accounts.holder_rows, minlength=block.num_rows)
        offsets = np.zeros(block.num_rows + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        holders = pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(accounts.holder_parts.astype(np.int32))
        )
        columns = {
            POS: positions,
            KEY_COLUMN: pa.array(accounts.key, pa.uint64(), mask=~accounts.has_id),
            contract.ROW_COLUMN: pa.array(accounts.rows),
            PRIMARY: pa.array(accounts.primary.astype(np.int32)),
            HOLDERS: holders,
        }
    else:
        cards = card_route_keys(block, partitions)
        columns = {
            POS: positions,
            KEY_COLUMN: pa.array(cards.key, pa.uint64(), mask=~cards.has_id),
            contract.ROW_COLUMN: pa.array(cards.rows),
            HOLDER: pa.array(cards.holder.astype(np.int32)),
        }
    return pa.table(columns)


def _account_keys(keys: pa.Table) -> AccountKeys:
    key = keys.column(KEY_COLUMN).combine_chunks()
    holders = keys.column(HOLDERS).combine_chunks()
    return AccountKeys(
        key=np.asarray(key.fill_null(0), dtype=np.uint64),
        has_id=np.asarray(key.is_valid(), dtype=bool),
        rows=np.asarray(keys.column(contract.ROW_COLUMN), dtype=np.int64),
        primary=np.asarray(keys.column(PRIMARY), dtype=np.int64),
        holder_rows=np.asarray(pc.list_parent_indices(holders), dtype=np.int64),
        holder_parts=np.asarray(pc.list_flatten(holders), dtype=np.int64),
    )


def _card_keys(keys: pa.Table) -> CardKeys:
    key = keys.column(KEY_COLUMN).combine_chunks()
    return CardKeys(
        key=np.asarray(key.fill_null(0), dtype=np.uint64),
        has_id=np.asarray(key.is_valid(), dtype=bool),
        rows=np.asarray(keys.column(contract.ROW_COLUMN), dtype=np.int64),
        holder=np.asarray(keys.column(HOLDER), dtype=np.int64),
    )


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


def route_account_partition(
    spills: Mapping[str, Spill], folder: Path, partitions: int, partition: int
) -> dict[str, Path]:
    """Pass 2 for one account partition: where its accounts and cards go, from their keys
    (one file per table, batch ``b`` for block ``b``: positions in the block, destination
    chunks, ownership)."""
    written = {}
    keys, blocks = {}, {}
    for table in ("accounts", "cards"):
        paths = tuple(bucketed_path(p) for p in spills[table].paths)
        keys[table], sizes = read_bucket_sized(paths, partition, _keys_schema(table))
        blocks[table] = np.repeat(np.arange(len(paths), dtype=np.int64), sizes)
    routes = route_keys(_account_keys(keys["accounts"]), _card_keys(keys["cards"]), partitions)
    for table, table_routes in zip(("accounts", "cards"), routes, strict=True):
        block = blocks[table][table_routes.rows]
        entries = pa.table(
            {
                BLOCK: pa.array(block.astype(np.int32)),
                POS: keys[table].column(POS).take(pa.array(table_routes.rows)),
                DESTINATION: pa.array(table_routes.destinations.astype(np.int32)),
                OWNED: pa.array(table_routes.owned),
                SHARED: pa.array(table_routes.shared),
            }
        )
        path = folder / f"routes-{table}-{partition:05d}.arrow"
        write_buckets(path, entries, block, len(spills[table].paths))
        written[table] = path
    return written


def route_block(table: str, block: int, routes: tuple[Path, ...], partitions: int) -> Path:
    """Pass 2, last step, for one raw block of accounts or cards: its rows, copied to
    every chunk they are routed to (batch ``k``: chunk ``k``, rows in file order, with
    their flags). The raw block is removed."""
    entries = read_bucket(routes, block, _routes_schema())
    destinations = np.asarray(entries.column(DESTINATION), dtype=np.int64)
    positions = np.asarray(entries.column(POS), dtype=np.int64)
    # by chunk, then by position in the block (so by _row, as the whole extract has them)
    order = np.argsort((destinations << 32) | positions)
    raw = routes[0].parent / f"{table}-{block:05d}.block.arrow"
    with pa.memory_map(str(raw), "r") as source:
        rows = pa.ipc.open_file(source).read_all()
        moved = rows.take(pa.array(positions[order]))
    moved = moved.append_column(OWNED, entries.column(OWNED).take(pa.array(order)))
    moved = moved.append_column(SHARED, entries.column(SHARED).take(pa.array(order)))
    path = raw.with_name(f"{table}-{block:05d}.arrow")
    write_sorted_buckets(path, moved, np.bincount(destinations, minlength=partitions))
    raw.unlink()
    bucketed_path(raw).unlink()  # its keys: every account partition is routed
    return path


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
        # blocks in file order, rows in block order: in _row order, no sort needed
        rows = read_bucket(extract.routed[table], partition, schema_of(table, "routed"))
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
