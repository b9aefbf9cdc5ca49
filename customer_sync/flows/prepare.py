"""Preparing a run: read, validate, nest, fingerprint and plan, chunk by chunk, into a spool.

Each step is a thin Prefect task around a pure function (or a reader), named for what it
does, and the same on every path: ``read-extract``, ``validate-and-nest`` (once per
chunk), ``plan-changes`` (once per chunk). A small extract is one chunk, read, validated
and nested here; a big one is read and split on disk, and each chunk validated and nested
by worker processes (``chunking.pool``), whose result a ``validate-and-nest`` task run
receives. Nothing is sent here: ``run/chunk_loop.py`` hands the planned chunks to delivery
and decides when the guards gate it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from customer_sync.adapters.readers import locate_tables, read_extract
from customer_sync.adapters.rejects import RejectsWriter
from customer_sync.adapters.spool import SpoolWriter
from customer_sync.chunking.partitioner import (
    DEFAULT_CHUNK_CUSTOMERS,
    PartitionedExtract,
    estimate_rows,
    partition_extract,
    partitions_for,
)
from customer_sync.chunking.pool import (
    WHOLE_CUSTOMERS,
    PreparedChunk,
    default_workers,
    prepare_validation,
    prepared_chunks,
)
from customer_sync.chunking.shards import Shard
from customer_sync.ledger.parts import record_missing_parts
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.options import current_hooks
from customer_sync.run.planning import PlanRow, plan_chunk_rows
from customer_sync.run.progress import PreparationProgress
from customer_sync.schemas.records import Extract
from customer_sync.transforms.plan import plan_customers
from customer_sync.transforms.validate import Validation, settlement_width_warning, validate_extract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    """Where the extract is: a folder or URL, or three explicit paths, and a rename map."""

    source: str | None = None
    customers: str | None = None
    accounts: str | None = None
    cards: str | None = None
    rename: Mapping[str, Any] | None = None

    def describe(self) -> str:
        if self.source:
            return self.source
        return ", ".join(p for p in (self.customers, self.accounts, self.cards) if p)


HELD_BACK_KEPT = 1000
"""Held-back rows kept in memory for the run's artifact table."""


@dataclass
class Preparation:
    """Totals of the prepared run; the planned documents themselves are in the spool."""

    rows_read: dict[str, int] = field(default_factory=dict)
    customers_read: int = 0
    customers_valid: int = 0
    customers_held_back: int = 0
    held_back_by_reason: dict[str, int] = field(default_factory=dict)
    orphan_accounts: int = 0
    orphan_cards: int = 0
    creates: int = 0
    updates: int = 0
    unchanged: int = 0
    changed: int = 0
    rejects_path: str | None = None
    ignored_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extract_share: float = 1.0
    """The share of the extract's chunks prepared (below 1 for a shard)."""
    seen_ids: list[pa.Array] = field(default_factory=list)
    """Every customer id read, valid or held back, chunk by chunk (who is absent)."""
    held_back: list[pd.DataFrame] = field(default_factory=list)
    """The first ``HELD_BACK_KEPT`` held-back rows (for the run's artifact; all of them
    are in the rejects file)."""
    plan_rows: list[PlanRow] | None = None
    """Per customer what the run does and what changed (a dry run collects them)."""

    @property
    def planned(self) -> int:
        return self.creates + self.updates

    def add_validation(self, validation: Validation) -> None:
        for table, count in validation.rows_read.items():
            self.rows_read[table] = self.rows_read.get(table, 0) + count
        self.customers_read += validation.customers_read
        self.customers_valid += validation.customers_valid
        self.customers_held_back += validation.customers_held_back
        self.orphan_accounts += validation.orphan_accounts
        self.orphan_cards += validation.orphan_cards
        for reason, count in validation.held_back_by_reason.items():
            self.held_back_by_reason[reason] = self.held_back_by_reason.get(reason, 0) + count
        kept = sum(len(frame) for frame in self.held_back)
        if len(validation.held_back) and kept < HELD_BACK_KEPT:
            self.held_back.append(validation.held_back.head(HELD_BACK_KEPT - kept))


@task(name="read-extract", task_run_name="read-extract", cache_policy=NONE)
def read_source(spec: SourceSpec) -> Extract:
    """Read the three tables as text, reporting extra columns."""
    extract = read_extract(
        spec.source,
        customers=spec.customers,
        accounts=spec.accounts,
        cards=spec.cards,
        rename=dict(spec.rename) if spec.rename else None,
    )
    rows = ", ".join(f"{t} {n:,}" for t, n in extract.rows_read.items())
    log.info("Read %s from %s", rows, spec.describe())
    for table, columns in extract.ignored_columns.items():
        if columns:
            log.warning("Ignored unknown columns in %s: %s", table, ", ".join(columns))
    return extract


@task(name="read-extract", task_run_name="read-extract", cache_policy=NONE)
def read_and_split(
    files: Mapping[str, str], folder: Path, partitions: int, **options: Any
) -> PartitionedExtract:
    """Read the three tables and split them on disk into ``partitions`` chunks of whole
    customer trees (``chunking.partitioner``); the chunks are validated next."""
    return partition_extract(files, folder, partitions, **options)


@task(name="validate-and-nest", task_run_name="validate-and-nest-{number:05d}", cache_policy=NONE)
def validate_and_nest(number: int, extract: Extract) -> PreparedChunk:
    """Check every rule and link, hold back whole customers whose tree has a problem, and
    nest the valid ones into documents with their fingerprints (a small extract: here)."""
    return prepare_validation(_validated(extract))


@task(name="validate-and-nest", task_run_name="validate-and-nest-{number:05d}", cache_policy=NONE)
def next_validated_chunk(number: int, chunks: Iterator[PreparedChunk]) -> PreparedChunk | None:
    """The next chunk, validated and nested by the worker processes (None after the last);
    this task run lasts while this process waits for it."""
    return next(chunks, None)


def _validated(extract: Extract) -> Validation:
    validation = validate_extract(extract)
    log.info(
        "Validated %s customers: %s valid, %s held back",
        f"{validation.customers_read:,}",
        f"{validation.customers_valid:,}",
        f"{validation.customers_held_back:,}",
    )
    for reason, count in validation.held_back_by_reason.items():
        log.info("Held back for %s: %s", reason, f"{count:,}")
    if validation.settlement_width_warning:  # once per run, with the count
        log.warning(validation.settlement_width_warning)
    return validation


@dataclass(frozen=True)
class PlannedChunk:
    creates: int
    updates: int
    unchanged: int
    changed: int
    """Updates because the document changed (not re-sends of dead letters or a full refresh)."""


@task(name="plan-changes", task_run_name="plan-changes-{number:05d}", cache_policy=NONE)
def plan_changes(
    number: int,
    chunk: PreparedChunk,
    ledger: SqliteLedger,
    spool: SpoolWriter,
    *,
    full_refresh: bool,
    mode: str,
    record_parts: bool = True,
    keep_documents: bool = False,
) -> PlannedChunk:
    """Compare the chunk's fingerprints with the ledger, spool the documents to send, and
    (``record_parts``, not in a dry run) keep the parts of documents the ledger lacks (and
    with ``keep_documents`` the documents: the enrollment-ended action).

    (The documents are built with the chunk, by ``validate-and-nest``. Pass the chunk
    wrapped in ``quote``: Prefect would otherwise walk every document.)"""
    documents = chunk.documents
    ids = documents.customer_ids.to_pylist()
    plan = plan_customers(
        pd.DataFrame(
            {"sourceCustomerId": ids, "fingerprint": chunk.fingerprints.to_pylist()}, dtype=object
        ),
        acknowledged=ledger.acknowledged_fingerprints(ids),
        dead_lettered=ledger.dead_letter_ids(ids),
        full_refresh=full_refresh,
        mode=mode,  # type: ignore[arg-type]
    )
    send = plan.frame[plan.frame["action"] != "unchanged"]
    # plan rows keep the documents' order, so their index is each document's position
    methods = send["method"].to_numpy(dtype=object)
    order = np.argsort(methods == "PUT", kind="stable")  # POSTs, then PUTs, in input order
    positions = pa.array(send.index.to_numpy()[order])
    spool.write(
        documents.customer_ids.take(positions),
        methods[order].tolist(),
        chunk.fingerprints.take(positions),
        documents.documents.take(positions),
    )
    if record_parts:  # what changed, part by part, for the next plan (customer-sync plan)
        record_missing_parts(
            ledger,
            ids,
            chunk.fingerprints,
            documents.documents,
            keep_documents=keep_documents,
        )
    return PlannedChunk(
        creates=plan.creates,
        updates=plan.updates,
        unchanged=plan.unchanged,
        changed=int((plan.frame["reason"] == "changed").sum()),
    )


@dataclass(frozen=True)
class ChunkLayout:
    """How an extract is prepared: whole, or in ``partitions`` chunks (of which a shard
    owns ``owned``)."""

    files: Mapping[str, str]
    customers: int
    """About how many customer rows the extract has (``estimate_rows``)."""
    chunk_customers: int
    partitions: int
    whole: bool
    owned: list[int] | None = None
    """The chunks this run prepares; None: all of them."""

    @property
    def share(self) -> float:
        """The fraction of the extract's chunks this run prepares."""
        return 1.0 if self.owned is None else len(self.owned) / self.partitions


def chunk_layout(
    spec: SourceSpec,
    *,
    chunk_customers: int = DEFAULT_CHUNK_CUSTOMERS,
    whole_customers: int = WHOLE_CUSTOMERS,
    shard: Shard | None = None,
) -> ChunkLayout:
    """Whole up to ``whole_customers`` customers, else chunks of about ``chunk_customers``;
    a shard always splits, in at least as many chunks as there are shards."""
    files = locate_tables(
        spec.source, customers=spec.customers, accounts=spec.accounts, cards=spec.cards
    )
    customers = estimate_rows(files["customers"])
    partitions = partitions_for(customers, chunk_customers)
    if shard is not None:
        partitions = max(partitions, shard.count)
        owned = shard.partitions(partitions)
        return ChunkLayout(files, customers, chunk_customers, partitions, whole=False, owned=owned)
    whole = customers <= whole_customers or partitions == 1
    return ChunkLayout(files, customers, chunk_customers, partitions, whole=whole)


def validated_chunks(
    spec: SourceSpec,
    work_folder: Path,
    *,
    workers: int | None = None,
    layout: ChunkLayout | None = None,
) -> Generator[PreparedChunk, None, None]:
    """The extract as chunks of customers, each validated, nested and fingerprinted, as
    ``layout`` says (default: ``chunk_layout(spec)``).

    A small extract (the notebook case) is read, validated and nested here, whole: one
    chunk. A bigger one is split on disk under ``work_folder`` (owner-only, removed at the
    end) and prepared by ``workers`` processes (default: one per core, at most two), with
    memory set by the chunk size (``chunking.pool``); its validation is the same. A shard's
    layout holds only its share of the chunks.
    """
    if layout is None:
        layout = chunk_layout(spec)
    expected = round(layout.customers * layout.share)  # an estimate: shown, never relied on
    own_chunks = 1 if layout.whole else len(layout.owned or range(layout.partitions))
    # the terminal's display (a run hook: on, off, or on a terminal); counts and time left
    with PreparationProgress(expected, own_chunks, enabled=current_hooks().progress) as shown:
        yield from _validated_chunks(spec, work_folder, layout, shown, workers=workers)


def _validated_chunks(
    spec: SourceSpec,
    work_folder: Path,
    layout: ChunkLayout,
    shown: PreparationProgress,
    *,
    workers: int | None,
) -> Generator[PreparedChunk, None, None]:
    if layout.whole:
        shown.step("reading")
        extract = read_source(spec)
        shown.step("validating and nesting")
        chunk = validate_and_nest(1, extract)
        shown.chunk_done(chunk.validation.customers_read)
        yield chunk
        return
    files, partitions, owned = layout.files, layout.partitions, layout.owned
    log.info(
        "Preparing %s in %d chunks of about %s customers%s",
        spec.describe(),
        partitions,
        f"{layout.chunk_customers:,}",
        "" if owned is None else f"; this shard prepares {len(owned)} of them",
    )
    rename = dict(spec.rename) if spec.rename else None
    chunks = prepared_chunks(
        files,
        work_folder,
        partitions,
        rename=rename,
        workers=workers or default_workers(),
        only=owned,
        split=read_and_split,
    )
    read = held_back = long_portfolio_ids = 0
    shown.step("splitting the extract")
    with closing(chunks):  # spill files and worker processes go when this stops, too
        for number in itertools.count(1):
            chunk = next_validated_chunk(number, quote(chunks))  # type: ignore[call-overload]
            if chunk is None:
                break
            shown.chunk_done(chunk.validation.customers_read)
            read += chunk.validation.customers_read
            held_back += chunk.validation.customers_held_back
            long_portfolio_ids += chunk.validation.portfolio_ids_over_settlement_width
            log.info(
                "Chunk %d of %d: %s customers so far, %s held back",
                number,
                partitions if owned is None else len(owned),
                f"{read:,}",
                f"{held_back:,}",
            )
            yield chunk
            del chunk
    warning = settlement_width_warning(long_portfolio_ids)
    if warning:  # once per run (of a shard), with the count of every chunk
        log.warning(warning)


def prepare(
    spec: SourceSpec,
    ledger: SqliteLedger,
    spool_path: Path,
    rejects_path: Path,
    *,
    full_refresh: bool,
    mode: str,
    layout: ChunkLayout | None = None,
    preparation: Preparation | None = None,
    record_parts: bool = True,
    keep_documents: bool = False,
    collect_plan: bool = False,
) -> Preparation:
    """Every chunk (of a shard's share) validated, nested and planned into one spool;
    rejects written; totals returned (and added to ``preparation``, when given, as each
    chunk is planned). ``layout`` (``chunk_layout``) holds the sizes and the shard."""
    if layout is None:
        layout = chunk_layout(spec)
    if preparation is None:
        preparation = Preparation()
    preparation.extract_share = layout.share
    if collect_plan:
        preparation.plan_rows = []
    chunks = validated_chunks(spec, spool_path.parent / "chunks", layout=layout)
    with SpoolWriter(spool_path) as spool, RejectsWriter(rejects_path) as rejects, closing(chunks):
        for number, chunk in enumerate(chunks, start=1):
            plan_chunk(
                number,
                chunk,
                ledger,
                spool,
                rejects,
                preparation,
                full_refresh=full_refresh,
                mode=mode,
                record_parts=record_parts,
                keep_documents=keep_documents,
            )
    return preparation


def plan_chunk(
    number: int,
    chunk: PreparedChunk,
    ledger: SqliteLedger,
    spool: SpoolWriter,
    rejects: RejectsWriter,
    preparation: Preparation,
    *,
    full_refresh: bool,
    mode: str,
    record_parts: bool = True,
    keep_documents: bool = False,
) -> None:
    """Prepared chunk ``number`` planned into ``spool``; its rejects written, its counts
    added (and the rejects file named as soon as it holds a row: a guard's message
    points at it)."""
    validation = chunk.validation
    preparation.add_validation(validation)
    preparation.seen_ids.append(chunk.documents.customer_ids)
    if len(validation.held_back):
        held = validation.held_back["sourceCustomerId"].dropna().astype(str).tolist()
        preparation.seen_ids.append(pa.array(held, type=pa.large_string()))
    rejects.write(validation.rejects)
    if rejects.rows:
        preparation.rejects_path = str(rejects.path)
    if preparation.plan_rows is not None:  # a dry run: the plan per customer, with changes
        preparation.plan_rows.extend(
            plan_chunk_rows(chunk, ledger, full_refresh=full_refresh, mode=mode)
        )
    planned = plan_changes(
        number,
        quote(chunk),  # type: ignore[call-overload]  # unwrapped by Prefect
        ledger,
        spool,
        full_refresh=full_refresh,
        mode=mode,
        record_parts=record_parts,
        keep_documents=keep_documents,
    )
    preparation.creates += planned.creates
    preparation.updates += planned.updates
    preparation.unchanged += planned.unchanged
    preparation.changed += planned.changed
