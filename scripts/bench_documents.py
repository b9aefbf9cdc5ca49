"""Real Customer documents for the delivery baselines, built as a run builds them.

A plain-aiohttp baseline is only fair when it sends bodies of the size the run sends: the
synthetic 23 KB bodies of ``scripts/bench_delivery`` are about a third of a real batch
(~1.5 KB per customer with accounts and cards). These helpers take a sample of customers
(the first ones of an extract folder, or a small synthetic extract), read and validate
them with the run's own code (``adapters.readers``, ``transforms.validate``) and nest them
with ``transforms.fast_nest``; the result is a ``Workload`` of ``POOL`` batches that the
baselines cycle.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from customer_sync.adapters.readers import read_extract
from customer_sync.devtools.synthetic import synthetic_extract, write_extract
from customer_sync.schemas.records import request_body
from customer_sync.transforms.fast_nest import customer_document_bytes
from customer_sync.transforms.validate import validate_extract
from scripts.bench_delivery import BATCH, POOL, Workload

SAMPLE_CUSTOMERS = POOL * BATCH * 5 // 4
"""Customers read for a sample: a few are held back (a co-holder outside the sample), and
POOL full batches are needed."""


def _text_table(path: Path) -> pa.Table:
    header = pacsv.open_csv(path).schema.names
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    return pacsv.read_csv(path, convert_options=convert)


def _first_customers(path: Path, count: int) -> pa.Table:
    header = pacsv.open_csv(path).schema.names
    convert = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()))
    reader = pacsv.open_csv(path, convert_options=convert)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows >= count:
            break
    return pa.Table.from_batches(batches, schema=reader.schema).slice(0, count)


def sample_of_extract(folder: Path, out: Path, customers: int = SAMPLE_CUSTOMERS) -> Path:
    """The first ``customers`` customers of a CSV extract folder, with their accounts and
    cards (those whose primary holder is among them), written as CSV into ``out``."""
    kept = _first_customers(folder / "customers.csv", customers)
    ids = kept.column("sourceCustomerId")
    accounts = _text_table(folder / "accounts.csv")
    accounts = accounts.filter(pc.is_in(accounts.column("primarySourceCustomerId"), ids))
    cards = _text_table(folder / "cards.csv")
    cards = cards.filter(pc.is_in(cards.column("sourceAccountId"), accounts["sourceAccountId"]))
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (("customers", kept), ("accounts", accounts), ("cards", cards)):
        pacsv.write_csv(table, out / f"{name}.csv")
    return out


def workload_of(folder: Path) -> Workload:
    """POOL batches of the valid documents of an extract folder, as the run builds them."""
    validation = validate_extract(read_extract(folder))
    built = customer_document_bytes(validation.customers, validation.accounts, validation.cards)
    if len(built.documents) < POOL * BATCH:
        raise ValueError(f"{folder}: {len(built.documents)} valid customers, need {POOL * BATCH}")
    ids: list[tuple[str, ...]] = []
    documents: list[tuple[bytes, ...]] = []
    for start in range(0, POOL * BATCH, BATCH):
        ids.append(tuple(built.customer_ids[start : start + BATCH]))
        documents.append(tuple(built.documents[start : start + BATCH]))
    bodies = [request_body(batch) for batch in documents]
    return Workload(ids, documents, bodies)


def extract_workload(folder: Path) -> Workload:
    """Real documents of the first customers of the extract in ``folder`` (CSV)."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    try:
        return workload_of(sample_of_extract(folder, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def synthetic_workload(seed: int = 11) -> Workload:
    """Real documents of a small synthetic extract (the generator of ``customer-sync
    generate``), when no extract is at hand."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    try:
        write_extract(synthetic_extract(SAMPLE_CUSTOMERS, seed=seed), scratch, "csv")
        return workload_of(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def mean_body_kib(work: Workload) -> float:
    return sum(map(len, work.bodies)) / len(work.bodies) / 1024
