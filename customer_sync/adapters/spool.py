"""A run's planned documents on disk, so that delivery streams them with flat memory.

Preparing (validate, nest, plan) finishes before anything is sent, because the guards
need the whole extract; the spool holds what preparation decided to send, one Arrow
record batch per prepared chunk, and delivery reads it back a record batch at a time.
It holds card data, so it is owner-only and removed when the run ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pyarrow as pa

SPOOL_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("method", pa.string()),
        ("fingerprint", pa.string()),
        ("document", pa.binary()),
    ]
)


class SpoolWriter:
    """Appends planned documents to an Arrow IPC file created with mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._sink = open(fd, "wb")  # noqa: SIM115 - closed in close()
        self._writer = pa.ipc.new_file(self._sink, SPOOL_SCHEMA)
        self.rows = 0

    def write(
        self,
        customer_ids: Sequence[str] | pa.Array,
        methods: Sequence[str] | pa.Array,
        fingerprints: Sequence[str] | pa.Array,
        documents: Sequence[bytes] | pa.Array,
    ) -> None:
        """Append one record batch; columns may be Python sequences or Arrow arrays (an
        Arrow column is cast, not copied value by value)."""
        if not len(customer_ids):
            return
        batch = pa.record_batch(
            [
                _column(values, field.type)
                for values, field in zip(
                    (customer_ids, methods, fingerprints, documents), SPOOL_SCHEMA, strict=True
                )
            ],
            schema=SPOOL_SCHEMA,
        )
        self._writer.write_batch(batch)
        self.rows += len(customer_ids)

    def close(self) -> None:
        self._writer.close()
        self._sink.close()

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _column(values: Sequence[object] | pa.Array, field_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == field_type else values.cast(field_type)
    return pa.array(values, field_type)


def read_spool(path: Path) -> Iterator[pa.RecordBatch]:
    """The spooled record batches in the order they were written, one in memory at a time."""
    with pa.memory_map(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index)
