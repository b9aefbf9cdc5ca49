"""Which chunk of customers each row of an extract goes to, so every chunk validates exactly.

An extract too big for memory is validated a chunk of customers at a time. For the result
to equal the validation of the whole extract, a chunk must hold every row that can change
the fate of its customers, and must be able to answer the few questions that reach beyond
it. This module holds the pure rules for that (``chunking.partitioner`` moves the rows):

* **customer partitions**: a customer row goes to partition ``hash(id) % P`` (the id as
  ``customer_sync.transforms.normalise`` keeps it: surrounding whitespace stripped, so ``" C1"`` and
  ``"C1"`` meet). Every copy of a duplicated id lands in one partition, so uniqueness is
  checked there. A row without an id goes to ``_row % P`` (it stands alone).
* **routing sets**: all rows of one account id (duplicates included), and every card that
  names it, are routed to the set of partitions of the *people* around that account: every
  holder listed on any of its rows, every primary holder, and every card's holder. So each
  chunk that holds one of those people holds the whole account with all its cards
  (duplicate account ids, card-to-account links and card keys are exact there), and the
  chunk of a card's holder sees the account the card claims (``holder_of_account``). A
  card whose account is not in the extract goes to its holder's partition. A row with
  nobody to route by goes to ``hash(account id) % P`` (or ``_row % P`` without an id).
* **ownership**: a row routed to several chunks is validated identically in each (same
  failures); only its **owner**, the lowest partition of its routing set, reports its
  failures and counts it, so every input row is counted once. Whether an account is
  *valid* depends on its holders' fate, decided in their own chunks: each chunk reports
  the shared rows it keeps (``Validation.shared_valid_rows``) and the totals take the union.
* **presence**: "is this holder in the customers table?" (orphan accounts, and which
  customers a failure holds back) is answered for the chunk's own partition by its rows,
  and for other partitions by ``customer_hashes``, the sorted 64-bit hashes of every
  customer id of the extract (8 bytes a customer). A hash can collide: an absent holder
  whose hash equals a present customer's would pass for present. Every id asked about is
  also asked about in its own partition's chunk, where the truth is known; a disagreement
  raises ``HashCollision`` rather than letting a wrong answer through (odds about
  ``customers * absent holders / 2**64``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.schemas import contract
from customer_sync.schemas.errors import CustomerSyncError

HASH_KEY: Final = "customer-sync-01"
"""Key of id hashes: it seeds the hash, so partitions and the presence index use it."""
_SEED: Final = np.uint64(
    int.from_bytes(hashlib.blake2b(HASH_KEY.encode(), digest_size=8).digest(), "little")
)
_LENGTH_MIX: Final = np.uint64(0x9E3779B97F4A7C15)
_FMIX: Final = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))
_SHIFT: Final = np.uint64(33)
_WORD_MASKS: Final = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], np.uint64)
"""The low ``n`` bytes of a word, for the last (short) word of an id."""
LONG_ID_BYTES: Final = 256
"""Ids longer than this are hashed one by one (BLAKE2b): the vectorised hash loops once
per 8 bytes of the longest id, and one huge cell must not make every id pay for it."""
NO_PARTITION: Final = -1
"""The partition of a missing id."""

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Hashes = npt.NDArray[np.uint64]
Presence = Callable[[pa.Array, Bools], Bools]
"""``(ids, found_here) -> in another chunk``: where each id is a customer of another chunk."""


class HashCollision(CustomerSyncError):
    """Two customer ids share a 64-bit hash, so chunked validation could be wrong."""


def stripped_ids(values: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    """Ids as ``transforms.normalise`` keeps them: whitespace stripped, blank -> null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = pc.utf8_trim_whitespace(values.cast(pa.large_string()))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)
    assert isinstance(text, pa.LargeStringArray)
    return text


def id_hashes(ids: pa.Array) -> Hashes:
    """A 64-bit hash of each id's UTF-8 bytes; a null hashes like ``""``.

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
    offsets = np.frombuffer(text.buffers()[1], np.int64)[text.offset : text.offset + count + 1]
    starts, lengths = offsets[:-1], np.diff(offsets)
    data = text.buffers()[2]
    # every id readable 8 bytes at a time: the bytes, then a word of zeros
    padded = np.zeros(int(offsets[-1]) + 8, dtype=np.uint8)
    if data is not None:
        padded[: offsets[-1]] = np.frombuffer(data, np.uint8, int(offsets[-1]))
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
        digest = hashlib.blake2b(text[row].as_py().encode(), digest_size=8, key=HASH_KEY.encode())
        hashes[row] = int.from_bytes(digest.digest(), "little")
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


def customer_partitions(ids: pa.Array, rows: Ints, partitions: int) -> tuple[Ints, Hashes]:
    """Per customer row, its partition; and the hashes of the ids (rows without one left
    out), for the presence index. ``ids`` are raw; a row without an id goes to
    ``_row % partitions``."""
    stripped = stripped_ids(ids)
    hashes = id_hashes(stripped)
    parts = partitions_of(hashes, partitions)
    missing = np.asarray(stripped.is_null(), dtype=bool)
    parts[missing] = rows[missing] % partitions
    return parts, hashes[~missing]


def account_partitions(hashes: Hashes, present: Bools, rows: Ints, partitions: int) -> Ints:
    """Per account or card row: its account partition (by account id; ``_row`` without)."""
    parts = partitions_of(hashes, partitions)
    parts[~present] = rows[~present] % partitions
    return parts


# --- routing keys: what routing needs of each row, computed once -----------------------------


@dataclass(frozen=True)
class AccountKeys:
    """What routing needs of account rows: no text, only hashes and partitions."""

    key: Hashes
    """Hash of the stripped account id (0 without one)."""
    has_id: Bools
    rows: Ints
    """``_row``."""
    primary: Ints
    """Partition of the primary holder (``NO_PARTITION`` without one)."""
    holder_rows: Ints
    """Listed holders other than the row's primary: position of their row (ascending)..."""
    holder_parts: Ints
    """... and their partition."""


@dataclass(frozen=True)
class CardKeys:
    """What routing needs of card rows."""

    key: Hashes
    """Hash of the stripped account id (0 without one)."""
    has_id: Bools
    rows: Ints
    holder: Ints
    """Partition of the card's holder (``NO_PARTITION`` without one)."""


def account_id_keys(ids: pa.Array | pa.ChunkedArray) -> tuple[Hashes, Bools]:
    """Per row: the hash of its stripped account id (0 without), and whether it has one."""
    stripped = stripped_ids(ids)
    present = np.asarray(stripped.is_valid(), dtype=bool)
    hashes = id_hashes(stripped)
    hashes[~present] = 0
    return hashes, present


def account_route_keys(accounts: pa.Table, partitions: int) -> AccountKeys:
    """The routing keys of raw account rows (``sourceAccountId``, ``sourceCustomerIds``,
    ``primarySourceCustomerId``, ``_row``)."""
    key, has_id = account_id_keys(accounts.column("sourceAccountId"))
    primaries = stripped_ids(accounts.column("primarySourceCustomerId"))
    primary = partitions_of(id_hashes(primaries), partitions)
    primary[np.asarray(primaries.is_null(), dtype=bool)] = NO_PARTITION
    # most listed holders are the primary: only the others are hashed
    cells = accounts.column("sourceCustomerIds").combine_chunks().fill_null("")
    listed = pc.split_pattern(cells, contract.LIST_SEPARATOR)
    holders = stripped_ids(pc.list_flatten(listed))
    holder_row = np.asarray(pc.list_parent_indices(listed), dtype=np.int64)
    same = pc.equal(holders, primaries.take(pa.array(holder_row))).fill_null(False)
    other = np.flatnonzero(~np.asarray(same, dtype=bool) & np.asarray(holders.is_valid()))
    others = holders.take(pa.array(other))
    return AccountKeys(
        key,
        has_id,
        _rows(accounts),
        primary,
        holder_row[other],
        partitions_of(id_hashes(others), partitions),
    )


def card_route_keys(cards: pa.Table, partitions: int) -> CardKeys:
    """The routing keys of raw card rows (``sourceAccountId``, ``sourceCustomerId``,
    ``_row``)."""
    key, has_id = account_id_keys(cards.column("sourceAccountId"))
    holder = id_partitions(cards.column("sourceCustomerId"), partitions)
    return CardKeys(key, has_id, _rows(cards), holder)


@dataclass(frozen=True)
class Routes:
    """Where rows go: one entry per (row, destination partition)."""

    rows: Ints
    """Position of the row in its table, once per destination."""
    destinations: Ints
    owned: Bools
    """The destination is the row's owner (the lowest partition of its routing set)."""
    shared: Bools
    """The row goes to more than one partition."""


def route_accounts_and_cards(
    accounts: pa.Table, cards: pa.Table, partitions: int
) -> tuple[Routes, Routes]:
    """The customer partitions of every raw account row and card row (``route_keys`` of
    their ``account_route_keys`` and ``card_route_keys``)."""
    return route_keys(
        account_route_keys(accounts, partitions), card_route_keys(cards, partitions), partitions
    )


def route_keys(accounts: AccountKeys, cards: CardKeys, partitions: int) -> tuple[Routes, Routes]:
    """The customer partitions of every account row and card row of one account partition.

    Every row of an account id, and every card naming it, must be in this call (they are:
    they share the account partition).

    Accounts are grouped by the hash of their id. Two ids with one hash would form one
    group whose rows all go to the union of both routing sets: more chunks see them, each
    decides about them exactly as the others do, and their owner is still one chunk. So a
    collision costs work, never correctness. People are known by their partition only: two
    people of one partition route a group alike.
    """
    account_hash, has_id = accounts.key, accounts.has_id
    card_hash, card_has_id = cards.key, cards.has_id

    # groups: one per distinct account id hash, one per account row without an id
    named = np.flatnonzero(has_id)
    # any order of equal hashes will do (a group's fallback needs only its hash), and
    # numpy's unstable sort of 64-bit integers is vectorised: 6x quicker than its stable one
    order = named[np.argsort(account_hash[named])]
    distinct = np.ones(len(order), dtype=bool)
    distinct[1:] = account_hash[order[1:]] != account_hash[order[:-1]]
    group = np.full(len(account_hash), -1, dtype=np.int64)
    group[order] = np.cumsum(distinct) - 1
    keys = account_hash[order[distinct]]  # sorted: group g has hash keys[g]
    representative = order[distinct]  # one row of the group
    nameless = np.flatnonzero(~has_id)
    group[nameless] = len(keys) + np.arange(len(nameless), dtype=np.int64)
    representative = np.concatenate([representative, nameless])
    groups = len(representative)
    # a card joins the group of its account id, when the extract has that account
    card_group = np.full(len(card_hash), -1, dtype=np.int64)
    if len(keys):  # a hash lookup: 6x quicker than a binary search of unsorted hashes
        at = pc.index_in(pa.array(card_hash), value_set=pa.array(keys))
        found = card_has_id & np.asarray(at.is_valid(), dtype=bool)
        card_group[found] = np.asarray(at.fill_null(0), dtype=np.int64)[found]

    # the people of each group: every primary, every listed holder, every card's holder
    linked = np.flatnonzero(card_group >= 0)
    people_group = np.concatenate([group, group[accounts.holder_rows], card_group[linked]])
    people_part = np.concatenate([accounts.primary, accounts.holder_parts, cards.holder[linked]])
    known = people_part != NO_PARTITION
    people_group, people_part = people_group[known], people_part[known]

    # a group nobody is routed by: its account id's partition, or its row's
    alone = np.ones(groups, dtype=bool)
    alone[people_group] = False
    lonely = np.flatnonzero(alone)
    fallback = np.where(
        lonely < len(keys),
        partitions_of(account_hash[representative[lonely]], partitions),
        accounts.rows[representative[lonely]] % partitions,
    )
    pairs = np.concatenate([people_group, lonely]) * partitions
    pairs += np.concatenate([people_part, fallback])
    # distinct (group, partition) pairs, sorted: each group's partitions ascending
    pairs.sort()
    keep = np.ones(len(pairs), dtype=bool)
    keep[1:] = pairs[1:] != pairs[:-1]
    pairs = pairs[keep]
    pair_group, pair_part = pairs // partitions, pairs % partitions
    count = np.bincount(pair_group, minlength=groups).astype(np.int64)
    start = np.zeros(groups, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])

    account_routes = _explode(group, start, count, pair_part)
    # cards of an account in the extract follow it; the others go to their holder, and
    # without a holder either, to their own row's partition
    holder_part = np.where(cards.holder != NO_PARTITION, cards.holder, cards.rows % partitions)
    card_routes = _explode(card_group, start, count, pair_part, alone_part=holder_part)
    return account_routes, card_routes


def _explode(
    group: Ints, start: Ints, count: Ints, pair_part: Ints, alone_part: Ints | None = None
) -> Routes:
    """One entry per (row, partition of its group); rows with group -1 go to ``alone_part``."""
    has_group = group >= 0
    per_row = np.ones(len(group), dtype=np.int64)
    per_row[has_group] = count[group[has_group]]
    rows = np.repeat(np.arange(len(group), dtype=np.int64), per_row)
    first = np.zeros(len(group), dtype=np.int64)
    np.cumsum(per_row[:-1], out=first[1:])
    within = np.arange(len(rows), dtype=np.int64) - first[rows]
    row_group = group[rows]
    grouped = row_group >= 0
    destinations = np.zeros(len(rows), dtype=np.int64)
    destinations[grouped] = pair_part[start[row_group[grouped]] + within[grouped]]
    if alone_part is not None:
        destinations[~grouped] = alone_part[rows[~grouped]]
    return Routes(
        rows=rows,
        destinations=destinations,
        owned=within == 0,
        shared=per_row[rows] > 1,
    )


def _rows(table: pa.Table) -> Ints:
    return np.asarray(table.column(contract.ROW_COLUMN), dtype=np.int64)


@dataclass(frozen=True)
class ChunkScope:
    """What validating one chunk (customer partition) of a bigger extract needs to know.

    The masks are aligned with the chunk's account and card rows (customers are all owned,
    none shared). ``customer_hashes`` is the extract's sorted, distinct id hashes.
    """

    partition: int
    partitions: int
    customer_hashes: Hashes
    owned: dict[str, Bools] = field(default_factory=dict)
    shared: dict[str, Bools] = field(default_factory=dict)

    def owned_rows(self, table: str, size: int) -> Bools:
        mask = self.owned.get(table)
        return np.ones(size, dtype=bool) if mask is None else mask

    def shared_rows(self, table: str, size: int) -> Bools:
        mask = self.shared.get(table)
        return np.zeros(size, dtype=bool) if mask is None else mask

    def present_elsewhere(self, ids: pa.Array, found_here: Bools) -> Bools:
        """Per id (normalised, not null): a customer with this id is in another chunk.

        ``found_here``: the id is a customer of this chunk (so it is in no other). The
        others are looked up in the index; those of this chunk's own partition must then
        be absent from it, else a hash collision is caught.
        """
        elsewhere = np.zeros(len(ids), dtype=bool)
        unknown = np.flatnonzero(~found_here)
        if len(unknown) == 0 or len(self.customer_hashes) == 0:
            return elsewhere
        hashes = id_hashes(ids.take(pa.array(unknown)))
        position = np.searchsorted(self.customer_hashes, hashes)
        position = np.minimum(position, len(self.customer_hashes) - 1)
        indexed = self.customer_hashes[position] == hashes
        mine = partitions_of(hashes, self.partitions) == self.partition
        if np.any(mine & indexed):
            raise HashCollision(
                "two customer ids of this extract share a 64-bit hash (a one in billions "
                "chance), so it cannot be checked in chunks exactly; nothing was sent. Run it "
                "in one chunk (a chunk size above its number of customers)"
            )
        elsewhere[unknown] = indexed & ~mine
        return elsewhere
