"""Which chunk of customers each row of an extract goes to, so every chunk validates exactly.

An extract too big for memory is validated a chunk of customers at a time. For the result
to equal the validation of the whole extract, a chunk must hold every row that can change
the fate of its customers, and must be able to answer the few questions that reach beyond
it. This module holds the pure rules for that (``adapters.partitioner`` moves the rows):

* **customer partitions**: a customer row goes to partition ``hash(id) % P`` (the id as
  ``transforms.normalise`` keeps it: surrounding whitespace stripped, so ``" C1"`` and
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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract
from schemas.errors import CustomerSyncError

HASH_KEY: Final = "customer-sync-01"
"""SipHash key of id hashes (16 characters); partitions and the presence index use it."""

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
    """A 64-bit hash of each id (SipHash-2-4 under ``HASH_KEY``); a null hashes like ``""``."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.uint64)
    values = ids.fill_null("").to_numpy(zero_copy_only=False)
    hashed: Hashes = pd.util.hash_array(values, hash_key=HASH_KEY, categorize=False)
    return hashed


def partitions_of(hashes: Hashes, partitions: int) -> Ints:
    """The partition of each hash."""
    return (hashes % np.uint64(partitions)).astype(np.int64)


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


KEY_COLUMN: Final = "_key"
"""Optional column of account and card tables: the hash of the stripped account id (null
without one), as ``account_keys`` computes it, kept from pass 1 so pass 2 need not redo it."""


def account_keys(table: pa.Table) -> tuple[Hashes, Bools]:
    """Per account or card row: the hash of its account id, and whether it has one."""
    if KEY_COLUMN in table.column_names:
        column = table.column(KEY_COLUMN).combine_chunks()
        present = np.asarray(column.is_valid(), dtype=bool)
        return np.asarray(column.fill_null(0), dtype=np.uint64), present
    stripped = stripped_ids(table.column("sourceAccountId"))
    present = np.asarray(stripped.is_valid(), dtype=bool)
    hashes = id_hashes(stripped)
    hashes[~present] = 0
    return hashes, present


def account_partitions(hashes: Hashes, present: Bools, rows: Ints, partitions: int) -> Ints:
    """Per account or card row: its account partition (by account id; ``_row`` without)."""
    parts = partitions_of(hashes, partitions)
    parts[~present] = rows[~present] % partitions
    return parts


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
    """The customer partitions of every account row and card row of one account partition.

    ``accounts`` needs raw ``sourceAccountId``, ``sourceCustomerIds``,
    ``primarySourceCustomerId`` and ``_row``; ``cards`` raw ``sourceAccountId``,
    ``sourceCustomerId`` and ``_row`` (both may carry ``KEY_COLUMN``). Every row of an
    account id, and every card naming it, must be in this call (they are: they share the
    account partition).

    Accounts are grouped by the hash of their id. Two ids with one hash would form one
    group whose rows all go to the union of both routing sets: more chunks see them, each
    decides about them exactly as the others do, and their owner is still one chunk. So a
    collision costs work, never correctness.
    """
    account_rows, card_rows = _rows(accounts), _rows(cards)
    account_hash, has_id = account_keys(accounts)
    card_hash, card_has_id = account_keys(cards)

    # groups: one per distinct account id hash, one per account row without an id
    named = np.flatnonzero(has_id)
    order = named[np.argsort(account_hash[named], kind="stable")]
    distinct = np.ones(len(order), dtype=bool)
    distinct[1:] = account_hash[order[1:]] != account_hash[order[:-1]]
    group = np.full(len(account_rows), -1, dtype=np.int64)
    group[order] = np.cumsum(distinct) - 1
    keys = account_hash[order[distinct]]  # sorted: group g has hash keys[g]
    representative = order[distinct]  # the group's first row, by hash order
    nameless = np.flatnonzero(~has_id)
    group[nameless] = len(keys) + np.arange(len(nameless), dtype=np.int64)
    representative = np.concatenate([representative, nameless])
    groups = len(representative)
    # a card joins the group of its account id, when the extract has that account
    card_group = np.full(len(card_rows), -1, dtype=np.int64)
    if len(keys):
        at = np.minimum(np.searchsorted(keys, card_hash), len(keys) - 1)
        found = card_has_id & (keys[at] == card_hash)
        card_group[found] = at[found]

    # the people of each group: every primary, every listed holder, every card's holder;
    # most holders and card holders are the primary, so only the others are hashed again
    primaries = stripped_ids(accounts.column("primarySourceCustomerId"))
    cells = accounts.column("sourceCustomerIds").combine_chunks().fill_null("")
    listed = pc.split_pattern(cells, contract.LIST_SEPARATOR)
    holders = stripped_ids(pc.list_flatten(listed))
    holder_row = np.asarray(pc.list_parent_indices(listed), dtype=np.int64)
    other_holder = _differs(holders, primaries.take(pa.array(holder_row)))
    card_holders = stripped_ids(cards.column("sourceCustomerId"))
    linked = np.flatnonzero(card_group >= 0)
    linked_holders = card_holders.take(pa.array(linked))
    group_primary = primaries.take(pa.array(representative[card_group[linked]]))
    other_card_holder = _differs(linked_holders, group_primary)
    people = pa.concat_arrays(
        [
            primaries,
            holders.filter(pa.array(other_holder)),
            linked_holders.filter(pa.array(other_card_holder)),
        ]
    )
    people_group = np.concatenate(
        [group, group[holder_row[other_holder]], card_group[linked[other_card_holder]]]
    )
    known = np.asarray(people.is_valid(), dtype=bool)
    people_part = partitions_of(id_hashes(people.filter(pa.array(known))), partitions)
    people_group = people_group[known]

    # a group nobody is routed by: its account id's partition, or its row's
    alone = np.ones(groups, dtype=bool)
    alone[people_group] = False
    lonely = np.flatnonzero(alone)
    fallback = np.where(
        lonely < len(keys),
        partitions_of(account_hash[representative[lonely]], partitions),
        account_rows[representative[lonely]] % partitions,
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
    # cards of an account in the extract follow it; the others go to their holder
    holder_part = card_rows % partitions  # without a holder either: its own row's
    unlinked = np.flatnonzero((card_group < 0) & np.asarray(card_holders.is_valid(), dtype=bool))
    holder_part[unlinked] = partitions_of(
        id_hashes(card_holders.take(pa.array(unlinked))), partitions
    )
    card_routes = _explode(card_group, start, count, pair_part, alone_part=holder_part)
    return account_routes, card_routes


def _differs(values: pa.Array, others: pa.Array) -> Bools:
    """Per item: not the same text as ``others`` (a null on either side differs)."""
    same = pc.equal(values, others).fill_null(False)
    return ~np.asarray(same, dtype=bool)


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
