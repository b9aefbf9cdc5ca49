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

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.chunking.id_hash import (
    NO_PARTITION,
    Hashes,
    Ints,
    id_hashes,
    id_partitions,
    partitions_of,
    stripped_ids,
)
from customer_sync.schemas import contract
from customer_sync.schemas.errors import CustomerSyncError

Bools = npt.NDArray[np.bool_]


class HashCollision(CustomerSyncError):
    """Two customer ids share a 64-bit hash, so chunked validation could be wrong."""


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
