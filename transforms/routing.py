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

HASH_KEY: Final = "customer-sync-01"
"""SipHash key of id hashes (16 characters); partitions and the presence index use it."""

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Hashes = npt.NDArray[np.uint64]
Presence = Callable[[pa.Array, Bools], Bools]
"""``(ids, found_here) -> in another chunk``: where each id is a customer of another chunk."""


class HashCollision(RuntimeError):
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


def account_partitions(account_ids: pa.Array, rows: Ints, partitions: int) -> Ints:
    """Per account or card row: its account partition (by account id; ``_row`` without)."""
    stripped = stripped_ids(account_ids)
    parts = partitions_of(id_hashes(stripped), partitions)
    missing = np.asarray(stripped.is_null(), dtype=bool)
    parts[missing] = rows[missing] % partitions
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

    def order(self) -> Ints:
        """The entries sorted by destination (stable: rows keep their order)."""
        return np.argsort(self.destinations, kind="stable")


def route_accounts_and_cards(
    accounts: pa.Table, cards: pa.Table, partitions: int
) -> tuple[Routes, Routes]:
    """The customer partitions of every account row and card row of one account partition.

    ``accounts`` needs raw ``sourceAccountId``, ``sourceCustomerIds``,
    ``primarySourceCustomerId`` and ``_row``; ``cards`` raw ``sourceAccountId``,
    ``sourceCustomerId`` and ``_row``. Every row of an account id, and every card naming
    it, must be in this call (they are: they share the account partition).
    """
    account_rows = _rows(accounts)
    card_rows = _rows(cards)
    account_key = stripped_ids(accounts.column("sourceAccountId"))
    card_key = stripped_ids(cards.column("sourceAccountId"))

    # groups: one per distinct account id, and one per account row without an id
    encoded = pc.dictionary_encode(account_key)
    named = len(encoded.dictionary)
    group = np.asarray(encoded.indices.fill_null(-1), dtype=np.int64)
    nameless = np.flatnonzero(group < 0)
    group[nameless] = named + np.arange(len(nameless), dtype=np.int64)
    groups = named + len(nameless)
    # a card joins the group of its account id, when the extract has that account
    card_group = np.asarray(
        pc.index_in(card_key, value_set=encoded.dictionary, skip_nulls=True).fill_null(-1),
        dtype=np.int64,
    )

    # the people of each group: listed holders, primaries, and its cards' holders
    holders = pc.split_pattern(
        accounts.column("sourceCustomerIds").combine_chunks().fill_null(""),
        contract.LIST_SEPARATOR,
    )
    holder_group = group[np.asarray(pc.list_parent_indices(holders), dtype=np.int64)]
    primaries = stripped_ids(accounts.column("primarySourceCustomerId"))
    card_holders = stripped_ids(cards.column("sourceCustomerId"))
    linked = card_group >= 0
    people = pa.concat_arrays(
        [
            stripped_ids(pc.list_flatten(holders)),
            primaries,
            card_holders.filter(pa.array(linked)),
        ]
    )
    people_group = np.concatenate([holder_group, group, card_group[linked]])
    known = np.asarray(people.is_valid(), dtype=bool)
    people_part = partitions_of(id_hashes(people.filter(pa.array(known))), partitions)
    people_group = people_group[known]

    # a group nobody is routed by: its account id's partition, or its row's
    alone = np.ones(groups, dtype=bool)
    alone[people_group] = False
    fallback = np.zeros(groups, dtype=np.int64)
    if named:
        fallback[:named] = partitions_of(id_hashes(encoded.dictionary), partitions)
    fallback[named:] = account_rows[nameless] % partitions
    lonely = np.flatnonzero(alone)
    pair_group = np.concatenate([people_group, lonely])
    pair_part = np.concatenate([people_part, fallback[lonely]])

    # distinct (group, partition) pairs, sorted: each group's partitions ascending
    pairs = np.unique(pair_group * partitions + pair_part)
    pair_group, pair_part = pairs // partitions, pairs % partitions
    count = np.bincount(pair_group, minlength=groups).astype(np.int64)
    start = np.zeros(groups, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])

    account_routes = _explode(group, start, count, pair_part)
    # cards of an account in the extract follow it; the others go to their holder
    holder_part = partitions_of(id_hashes(card_holders), partitions)
    no_holder = np.asarray(card_holders.is_null(), dtype=bool)
    holder_part[no_holder] = card_rows[no_holder] % partitions
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

        ``found_here``: the id is a customer of this chunk. Ids of this chunk's own
        partition are checked against the index, so a hash collision is caught.
        """
        hashes = id_hashes(ids)
        if len(hashes) == 0:
            return np.zeros(0, dtype=bool)
        position = np.searchsorted(self.customer_hashes, hashes)
        position = np.minimum(position, max(len(self.customer_hashes) - 1, 0))
        indexed = (
            self.customer_hashes[position] == hashes
            if len(self.customer_hashes)
            else np.zeros(len(hashes), dtype=bool)
        )
        mine = partitions_of(hashes, self.partitions) == self.partition
        if np.any(mine & (indexed != found_here)):
            raise HashCollision(
                "a customer id shares its 64-bit hash with another id, so the extract "
                "cannot be validated in chunks; validate it in one chunk"
            )
        elsewhere: Bools = indexed & ~mine
        return elsewhere
