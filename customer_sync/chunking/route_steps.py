"""The steps of passes 1 and 2 that run in the pool's workers, one block or one account
partition each (``chunking/partitioner.py`` hands them out): bucketing a raw block,
keying accounts and cards, routing an account partition, moving a block to its chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.chunking.routing import (
    AccountKeys,
    CardKeys,
    account_partitions,
    account_route_keys,
    card_route_keys,
    customer_partitions,
    route_keys,
)
from customer_sync.chunking.spill_files import (
    BLOCK,
    DESTINATION,
    HOLDER,
    HOLDERS,
    KEY_COLUMN,
    OWNED,
    POS,
    PRIMARY,
    SHARED,
    Spill,
    keys_schema,
    read_bucket,
    read_bucket_sized,
    routes_schema,
    write_buckets,
    write_sorted_buckets,
)
from customer_sync.schemas import contract


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
        keys[table], sizes = read_bucket_sized(paths, partition, keys_schema(table))
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
    entries = read_bucket(routes, block, routes_schema())
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
