"""Helpers for the chunked-validation tests (not a test module).

``chunks_in_memory`` splits an in-memory ``Extract`` into chunks with the routing rules of
``chunking.routing``, without files, so property tests run fast; ``chunking.partitioner``
does the same through files and is checked against the whole extract separately.
``assert_same_validation`` compares the whole-extract validation with the combination of
the chunks' validations: everything a user sees, counted once.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa

from customer_sync.chunking.routing import ChunkScope, customer_partitions, route_accounts_and_cards
from customer_sync.chunking.spill_files import schema_of
from customer_sync.schemas import contract
from customer_sync.schemas.columns import text_series
from customer_sync.schemas.records import Extract
from customer_sync.transforms.fast_nest import customer_document_bytes
from customer_sync.transforms.fingerprint import customer_fingerprints
from customer_sync.transforms.validate import Validation


def _arrow(frame: pd.DataFrame, table: str) -> pa.Table:
    schema = schema_of(table)
    return pa.Table.from_arrays(
        [pa.array(frame[f.name], from_pandas=True).cast(f.type) for f in schema], schema=schema
    )


def _frame(table: pa.Table, name: str) -> pd.DataFrame:
    index = pd.RangeIndex(table.num_rows)
    frame = pd.DataFrame(
        {c: text_series(table.column(c), index) for c in contract.COLUMNS[name]}, index=index
    )
    frame[contract.ROW_COLUMN] = np.asarray(table.column(contract.ROW_COLUMN), dtype=np.int64)
    return frame


def chunks_in_memory(extract: Extract, partitions: int) -> list[tuple[Extract, ChunkScope]]:
    """The extract as ``partitions`` chunks, each with its scope."""
    tables = {t: _arrow(extract.table(t), t) for t in contract.TABLES}
    customers = tables["customers"]
    rows = np.asarray(customers.column(contract.ROW_COLUMN), dtype=np.int64)
    parts, present = customer_partitions(customers.column("sourceCustomerId"), rows, partitions)
    index = np.unique(present)
    routes = dict(
        zip(
            ("accounts", "cards"),
            route_accounts_and_cards(tables["accounts"], tables["cards"], partitions),
            strict=True,
        )
    )
    chunks = []
    for k in range(partitions):
        frames = {"customers": _frame(customers.filter(pa.array(parts == k)), "customers")}
        owned, shared = {}, {}
        for table, route in routes.items():
            mine = np.flatnonzero(route.destinations == k)
            rows_of = np.asarray(tables[table].column(contract.ROW_COLUMN), dtype=np.int64)
            order = mine[np.argsort(rows_of[route.rows[mine]], kind="stable")]
            frames[table] = _frame(tables[table].take(pa.array(route.rows[order])), table)
            owned[table] = route.owned[order]
            shared[table] = route.shared[order]
        scope = ChunkScope(k, partitions, index, owned, shared)
        chunk = Extract(
            customers=frames["customers"],
            accounts=frames["accounts"],
            cards=frames["cards"],
            files=dict(extract.files),
        )
        chunks.append((chunk, scope))
    return chunks


def _rows(frame: pd.DataFrame) -> list[int]:
    return sorted(frame[contract.ROW_COLUMN].tolist())


def _records(frame: pd.DataFrame) -> Counter[tuple[object, ...]]:
    return Counter(
        tuple(None if pd.isna(v) else v for v in row)
        for row in frame.itertuples(index=False, name=None)
    )


def assert_same_validation(whole: Validation, combined: Validation) -> None:
    """Same valid rows, held-back customers and reasons, rejects (as a multiset), counts."""
    assert combined.summary() == whole.summary()
    for table in contract.TABLES:
        assert _rows(getattr(combined, table)) == _rows(getattr(whole, table)), table
    assert _records(combined.held_back) == _records(whole.held_back)
    assert _records(combined.rejects) == _records(whole.rejects)
    assert sorted(combined.customers["sourceCustomerId"].tolist()) == sorted(
        whole.customers["sourceCustomerId"].tolist()
    )


def documents_of(validation: Validation) -> dict[str, tuple[bytes, str]]:
    """Each valid customer's document and fingerprint."""
    documents = customer_document_bytes(validation.customers, validation.accounts, validation.cards)
    fingerprints = customer_fingerprints(
        validation.customers, validation.accounts, validation.cards
    )
    return {
        cid: (doc, str(fingerprints.loc[cid]))
        for cid, doc in zip(documents.customer_ids, documents.documents, strict=True)
    }
