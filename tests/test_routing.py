"""The id hash that places customers in chunks: one value per id text, however Arrow holds it.

Chunked validation (``tests/test_chunked_validation.py``) relies on every process, table and
block hashing an id alike; these cases pin the hash itself down: string and large string,
sliced arrays, nulls, ids of every length around its 8-byte steps, and the long ids that
take the one-by-one path. The values are pinned (shard membership depends on them), and the
vectorised ``id_hashes`` is held to its readable reference ``id_hash_reference``.
"""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pyarrow as pa
from hypothesis import given, settings

from customer_sync.chunking.id_hash import (
    LONG_ID_BYTES,
    id_hash_reference,
    id_hashes,
    id_partitions,
    partition_reference,
    partitions_of,
)

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


# Literal values: a change to the hash moves customers between shards and chunks (a shard
# run with the old layout would then miss some and take others'), so it must show here.
_PINNED = {
    "": (0xA06E5E4DE66C3DAF, 3, 15),
    "C1": (0xA0B884A110C3DD6F, 3, 15),
    "C000001": (0x2D3C246BEDF70562, 2, 2),
    "CUST-00001234": (0x8A378BAFCF7E107A, 2, 10),
    "Zoë-Ærø-42": (0x0E2426C646711A90, 0, 0),
    "x" * 300: (0x7BE8A7FFDACF9240, 0, 0),  # a long id: the BLAKE2b path
}


def test_the_id_hash_and_shards_of_a_few_ids_are_pinned() -> None:
    ids = list(_PINNED)
    fast = id_hashes(pa.array(ids, pa.large_string())).tolist()
    for cid, got in zip(ids, fast, strict=True):
        value, of_4, of_16 = _PINNED[cid]
        assert got == value == id_hash_reference(cid), cid
        assert (partition_reference(cid, 4), partition_reference(cid, 16)) == (of_4, of_16)
    hashes = np.array(fast, dtype=np.uint64)
    assert partitions_of(hashes, 4).tolist() == [p[1] for p in _PINNED.values()]
    assert id_partitions(pa.array([f" {i} " for i in ids[1:]]), 16).tolist() == [
        p[2] for p in list(_PINNED.values())[1:]
    ]


_ID_TEXT = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=LONG_ID_BYTES - 8, max_size=LONG_ID_BYTES + 8),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(_ID_TEXT, max_size=30), before=st.integers(0, 3), after=st.integers(0, 3))
def test_the_vectorised_id_hash_equals_its_reference(
    ids: list[str | None], before: int, after: int
) -> None:
    expected = [id_hash_reference(cid) for cid in ids]
    for kind in (pa.string(), pa.large_string()):
        padded = pa.array(["p" * 9] * before + ids + ["q"] * after, kind)
        assert id_hashes(padded.slice(before, len(ids))).tolist() == expected
