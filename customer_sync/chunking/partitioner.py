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

The spill files and the work folder are ``chunking/spill_files.py``'s; the per-block and
per-partition steps that run in the pool are ``chunking/route_steps.py``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from customer_sync.adapters.files import READ_ERRORS, not_a_regular_file, open_binary, unreadable
from customer_sync.adapters.parquet_files import parquet_file
from customer_sync.adapters.readers import (
    Rename,
    ignored_columns,
    iter_text_tables,
    table_format,
)
from customer_sync.chunking.route_steps import (
    bucketed_path,
    route_account_partition,
    route_block,
    spill_block,
)
from customer_sync.chunking.routing import ChunkScope
from customer_sync.chunking.spill_files import (
    OWNED,
    SHARED,
    Spill,
    customer_index,
    distinct_sorted,
    private_writer,
    read_bucket,
    schema_of,
    write_index,
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
_COUNT_BYTES: Final = 8 << 20


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
                sink, writer = private_writer(raw, schema)
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


# --- pass 3 ---------------------------------------------------------------------------------


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
