"""The spool cut into request batches, the documents left in the spool's Arrow memory.

Delivery reads the spool one record batch (one prepared chunk) at a time. Turning every
document into a Python ``bytes`` (``to_pydict``) and then joining 50 of them into a body
copied each document twice and made 50 objects per batch: about a seventh of the flow's
own CPU per batch at 1M customers. Here a batch keeps offsets into its record batch's
document buffer (memory-mapped from the spool file); its body is made when it is sent, by
one join of buffer slices, and a document becomes ``bytes`` only when asked for (a batch
split on a 400, a dead letter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.adapters.spool import read_spool
from customer_sync.schemas.arrow_bytes import cell_bytes
from customer_sync.schemas.contract import MAX_CUSTOMERS_PER_REQUEST
from customer_sync.schemas.errors import CustomerSyncError
from customer_sync.schemas.records import Batch, Method, request_body

METHODS: tuple[Method, ...] = ("POST", "PUT")


class SpoolDocuments(Sequence[bytes]):
    """A batch's documents as slices of the spool's document buffer (no copy until read)."""

    __slots__ = ("_offsets", "_values")

    def __init__(self, values: memoryview, offsets: list[int]) -> None:
        self._values = values
        self._offsets = offsets  # len(self) + 1 positions in ``values``

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("document index out of range")
        return bytes(self._values[self._offsets[index] : self._offsets[index + 1]])

    def body(self) -> bytes:
        """``{"customers":[d1,d2,...]}``, the same bytes as ``Batch.body``, in one copy."""
        values = self._values
        return request_body([values[start:stop] for start, stop in pairwise(self._offsets)])


@dataclass(frozen=True)
class SpooledBatch(Batch):
    """A ``Batch`` whose ``documents`` are a ``SpoolDocuments``: same ids, body and bytes."""

    documents: SpoolDocuments  # type: ignore[assignment]

    @property
    def body(self) -> bytes:
        return self.documents.body()


@dataclass(frozen=True)
class PlannedBatch:
    """A batch and the fingerprints of its documents (recorded when acknowledged)."""

    batch: Batch
    fingerprints: dict[str, str]


def planned_batches(spool_path: Path, batch_size: int, run_id: str) -> Iterator[PlannedBatch]:
    """The spool cut into batches of one method each, in spool order.

    Batch ids are ``{run_id}-{record batch:04d}-{post|put}-{n:06d}`` (n from 1), so a run's
    batches sort in sending order. A customer twice in one record batch and method is an
    error (each customer is sent once per run).
    """
    if not 1 <= batch_size <= MAX_CUSTOMERS_PER_REQUEST:
        raise ValueError(
            f"batch size must be between 1 and {MAX_CUSTOMERS_PER_REQUEST} "
            f"(the partner's limit per request), not {batch_size}"
        )
    for number, record_batch in enumerate(read_spool(spool_path)):
        for method in METHODS:
            rows = _rows_of(record_batch, method)
            if rows is None:
                continue
            prefix = f"{run_id}-{number:04d}-{method.lower()}"
            yield from _cut(rows, method, batch_size, prefix)


def spool_batch_count(spool_path: Path, batch_size: int) -> int:
    """How many batches ``planned_batches`` will cut (reads the method column only)."""
    count = 0
    for record_batch in read_spool(spool_path):
        posts = int(pc.sum(pc.equal(record_batch.column("method"), "POST")).as_py() or 0)
        puts = record_batch.num_rows - posts
        count += -(-posts // batch_size) + -(-puts // batch_size)
    return count


def _rows_of(record_batch: pa.RecordBatch, method: Method) -> pa.RecordBatch | None:
    """The record batch's rows of one method, in order: a zero-copy slice when they are
    contiguous (preparation spools POSTs, then PUTs), else a copy."""
    mask = pc.equal(record_batch.column("method"), method).to_numpy(zero_copy_only=False)
    picked = np.flatnonzero(mask)
    if not len(picked):
        return None
    first, last = int(picked[0]), int(picked[-1])
    if last - first + 1 == len(picked):
        return record_batch.slice(first, len(picked))
    return record_batch.take(pa.array(picked))


def _cut(
    rows: pa.RecordBatch, method: Method, batch_size: int, prefix: str
) -> Iterator[PlannedBatch]:
    ids: list[str] = rows.column("customer_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise CustomerSyncError(f"the spool repeats a customer in {prefix}: each is sent once")
    fingerprints: list[str] = rows.column("fingerprint").to_pylist()
    values, offsets = _document_buffer(rows.column("document"))
    for number, start in enumerate(range(0, len(ids), batch_size), start=1):
        stop = min(start + batch_size, len(ids))
        batch_ids = tuple(ids[start:stop])
        documents = SpoolDocuments(values, offsets[start : stop + 1].tolist())
        batch = SpooledBatch(f"{prefix}-{number:06d}", method, batch_ids, documents)
        yield PlannedBatch(batch, dict(zip(batch_ids, fingerprints[start:stop], strict=True)))


def _document_buffer(documents: pa.Array) -> tuple[memoryview, np.ndarray]:
    """The values buffer of a binary column and each row's offsets into it."""
    if documents.null_count:
        raise CustomerSyncError("the spool holds a customer without a document")
    cells = cell_bytes(documents)
    return cells.data.data, cells.offsets
