"""The id hash that places customers in chunks: one value per id text, however Arrow holds it.

Chunked validation (``tests/test_chunked_validation.py``) relies on every process, table and
block hashing an id alike; these cases pin the hash itself down: string and large string,
sliced arrays, nulls, ids of every length around its 8-byte steps, and the long ids that
take the one-by-one path.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from customer_sync.chunking.routing import LONG_ID_BYTES, id_hashes, id_partitions

_IDS = [
    "",
    "C1",
    "C0000000001",
    "ACC-0000000001-01",
    "é-Ünïcode",
    *("x" * n for n in range(1, 26)),
    "x" * LONG_ID_BYTES,
    "x" * (LONG_ID_BYTES + 1),
    "y" * 5_000,
]


def test_an_id_hashes_alike_however_arrow_holds_it() -> None:
    small = id_hashes(pa.array(_IDS, pa.string()))
    large = id_hashes(pa.array(_IDS, pa.large_string()))
    one_by_one = np.concatenate([id_hashes(pa.array([i], pa.large_string())) for i in _IDS])
    reversed_order = id_hashes(pa.array(_IDS[::-1], pa.string()))[::-1]
    assert small.tolist() == large.tolist() == one_by_one.tolist() == reversed_order.tolist()
    sliced = pa.array(["pad", *_IDS, "pad"], pa.large_string()).slice(1, len(_IDS))
    assert id_hashes(sliced).tolist() == small.tolist()


def test_distinct_ids_hash_apart_and_a_null_like_the_empty_id() -> None:
    hashes = id_hashes(pa.array(_IDS, pa.large_string()))
    assert len(set(hashes.tolist())) == len(_IDS)
    assert id_hashes(pa.array([None, ""], pa.string())).tolist() == [hashes[0]] * 2
    # a trailing zero byte is text too (the last word is masked, not zero-padded alike)
    assert len(set(id_hashes(pa.array(["a", "a\x00", "a\x00\x00"])).tolist())) == 3
    assert id_hashes(pa.array([], pa.string())).tolist() == []


def test_many_ids_spread_evenly_over_partitions() -> None:
    ids = pa.array([f"C{n:010d}" for n in range(100_000)], pa.large_string())
    assert len(np.unique(id_hashes(ids))) == 100_000
    counts = np.bincount(id_partitions(ids, 20), minlength=20)
    assert counts.min() > 4_500 and counts.max() < 5_500


def test_an_id_partition_is_that_of_its_stripped_text() -> None:
    parts = id_partitions(pa.array([" C1 ", "C1", "  ", None], pa.string()), 7)
    assert parts[0] == parts[1]
    assert parts[2:].tolist() == [-1, -1]
