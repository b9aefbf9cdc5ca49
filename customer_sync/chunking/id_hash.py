"""The id hash: which partition (chunk, shard) a customer belongs to.

Shard membership depends on it, so its values are fixed: ``tests/test_id_hash.py`` pins the
hashes and partitions of a few ids, and holds the fast path to its reference.

* ``id_hashes`` is the fast path, vectorised over Arrow's buffers (every row of every table
  is hashed at least once);
* ``id_hash_reference`` is the same hash of one id, written to be read: for each 8 bytes of
  the id's UTF-8 (the last word zero-padded), ``h = fmix64(h ^ word)``, starting from
  ``h = seed ^ (length * 0x9E3779B97F4A7C15)`` and ending with one more ``fmix64`` (the
  MurmurHash3 finaliser); ids longer than ``LONG_ID_BYTES`` are BLAKE2b's (keyed), and a
  missing id hashes like ``""``.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas.arrow_bytes import cell_bytes

HASH_KEY: Final = "customer-sync-01"
"""Key of id hashes: it seeds the hash, so partitions and the presence index use it."""
SEED: Final = int.from_bytes(hashlib.blake2b(HASH_KEY.encode(), digest_size=8).digest(), "little")
LENGTH_MIX: Final = 0x9E3779B97F4A7C15
FMIX: Final = (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)
LONG_ID_BYTES: Final = 256
"""Ids longer than this are hashed one by one (BLAKE2b): the vectorised hash loops once
per 8 bytes of the longest id, and one huge cell must not make every id pay for it."""
NO_PARTITION: Final = -1
"""The partition of a missing id."""

_MASK64: Final = 2**64 - 1
_SEED: Final = np.uint64(SEED)
_LENGTH_MIX: Final = np.uint64(LENGTH_MIX)
_FMIX: Final = (np.uint64(FMIX[0]), np.uint64(FMIX[1]))
_SHIFT: Final = np.uint64(33)
_WORD_MASKS: Final = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], np.uint64)
"""The low ``n`` bytes of a word, for the last (short) word of an id."""

Ints = npt.NDArray[np.int64]
Hashes = npt.NDArray[np.uint64]


def stripped_ids(values: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """Ids as ``transforms.normalise`` keeps them: whitespace stripped, blank -> null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = pc.utf8_trim_whitespace(values.cast(pa.large_string()))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)
    assert isinstance(text, pa.LargeStringArray)
    return text


# --- the reference: one id, as the module docstring says ------------------------------------
def _fmix64(value: int) -> int:
    """MurmurHash3's 64-bit finaliser."""
    value ^= value >> 33
    value = (value * FMIX[0]) & _MASK64
    value ^= value >> 33
    value = (value * FMIX[1]) & _MASK64
    value ^= value >> 33
    return value


def id_hash_reference(customer_id: str | None) -> int:
    """The 64-bit hash of one id's UTF-8 bytes (``None`` like ``""``): ``id_hashes``'s
    reference, one id at a time."""
    data = (customer_id or "").encode()
    if len(data) > LONG_ID_BYTES:
        digest = hashlib.blake2b(data, digest_size=8, key=HASH_KEY.encode()).digest()
        return int.from_bytes(digest, "little")
    value = SEED ^ ((len(data) * LENGTH_MIX) & _MASK64)
    for start in range(0, len(data), 8):
        value = _fmix64(value ^ int.from_bytes(data[start : start + 8], "little"))
    return _fmix64(value)


def partition_reference(customer_id: str | None, partitions: int) -> int:
    """The partition of one (stripped) id: ``partitions_of``'s reference."""
    return id_hash_reference(customer_id) % partitions


# --- the fast path ---------------------------------------------------------------------------
def id_hashes(ids: pa.Array) -> Hashes:
    """A 64-bit hash of each id's UTF-8 bytes; a null hashes like ``""`` (see
    ``id_hash_reference``).

    Vectorised over Arrow's buffers, 8 bytes at a time, each step a MurmurHash3 finaliser
    (a bijection, so ids of one length that differ in one word never collide), seeded by
    ``HASH_KEY`` and the length: about 5x cheaper than SipHash through Python strings, and
    every row of every table is hashed at least once. Collisions cost work or stop the run
    (``HashCollision``), they are never believed, so a fast well-mixed hash is enough.
    """
    text = ids.cast(pa.large_string()).fill_null("")
    assert isinstance(text, pa.LargeStringArray)
    count = len(text)
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    cells = cell_bytes(text)
    offsets = cells.offsets
    starts, lengths = cells.starts, cells.lengths
    # every id readable 8 bytes at a time: the bytes, then a word of zeros
    padded = np.zeros(int(offsets[-1]) + 8, dtype=np.uint8)
    padded[: offsets[-1]] = cells.data[: offsets[-1]]
    words = np.ndarray((len(padded) - 7,), np.dtype("<u8"), padded, strides=(1,))
    hashes = _SEED ^ (lengths.astype(np.uint64) * _LENGTH_MIX)
    short = lengths <= LONG_ID_BYTES
    longest = int(lengths[short].max()) if short.any() else 0
    for word in range(0, longest, 8):
        live = np.flatnonzero(short & (lengths > word))
        if len(live) == count:  # all of them: no gather, no scatter
            value = words[starts + word] & _WORD_MASKS[np.minimum(lengths - word, 8)]
            hashes = _fmix(hashes ^ value)
            continue
        value = words[starts[live] + word] & _WORD_MASKS[np.minimum(lengths[live] - word, 8)]
        hashes[live] = _fmix(hashes[live] ^ value)
    hashes = _fmix(hashes)
    for row in np.flatnonzero(~short).tolist():
        hashes[row] = id_hash_reference(text[row].as_py())
    return hashes


def _fmix(values: Hashes) -> Hashes:
    """MurmurHash3's 64-bit finaliser, in place."""
    values ^= values >> _SHIFT
    values *= _FMIX[0]
    values ^= values >> _SHIFT
    values *= _FMIX[1]
    values ^= values >> _SHIFT
    return values


def partitions_of(hashes: Hashes, partitions: int) -> Ints:
    """The partition of each hash."""
    return (hashes % np.uint64(partitions)).astype(np.int64)


def id_partitions(ids: pa.Array, partitions: int) -> Ints:
    """The partition of each id (raw: stripped here), ``NO_PARTITION`` without one."""
    stripped = stripped_ids(ids)
    parts = partitions_of(id_hashes(stripped), partitions)
    parts[np.asarray(stripped.is_null(), dtype=bool)] = NO_PARTITION
    return parts
