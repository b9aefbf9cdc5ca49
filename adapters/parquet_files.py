"""Parquet extracts: opened (locally or through fsspec), read by column, and made text.

``text_column`` turns any column a bank's Parquet may hold into text without guessing:
strings as they are, lists of strings ``|``-joined, integers, decimals and dates as written,
timestamps as ISO-8601 (``Z`` when the column is zoned), whole-number floats (pandas' way
of writing an integer column with gaps) as integers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapters.files import file_size, is_local, local_path, open_binary
from schemas import contract
from schemas.errors import InputError


@contextmanager
def parquet_file(path: str, storage_options: Mapping[str, Any] | None) -> Iterator[pq.ParquetFile]:
    """The Parquet file, open for as long as the block runs (remote streams are closed)."""
    stream = None if is_local(path, storage_options) else open_binary(path, storage_options)
    source: Any = stream if stream is not None else local_path(path)
    try:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as error:
            if file_size(path, storage_options) == 0:
                raise InputError(path, "file is empty (0 bytes)") from error
            raise InputError(
                path, "is not a readable Parquet file (corrupt or not Parquet)"
            ) from error
        yield parquet
    finally:
        if stream is not None:
            stream.close()


def parquet_columns(path: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The file's column names, from its footer."""
    with parquet_file(path, storage_options) as parquet:
        return list(parquet.schema_arrow.names)


def read_parquet_columns(
    path: str, keep: Sequence[str], storage_options: Mapping[str, Any] | None
) -> pa.Table:
    """The ``keep`` columns of the file (the others are never read)."""
    with parquet_file(path, storage_options) as parquet:
        try:
            table: pa.Table = parquet.read(columns=list(keep))
        except (pa.ArrowException, OSError) as error:
            raise InputError(path, "is not a readable Parquet file (corrupt data)") from error
    return table


def parquet_batches(
    path: str, keep: Sequence[str], storage_options: Mapping[str, Any] | None, block_rows: int
) -> Iterator[pa.RecordBatch]:
    """The ``keep`` columns, ``block_rows`` rows at a time (row groups are read in turn)."""
    with parquet_file(path, storage_options) as parquet:
        try:
            yield from parquet.iter_batches(batch_size=block_rows, columns=list(keep))
        except (pa.ArrowException, OSError) as error:
            raise InputError(path, "is not a readable Parquet file (corrupt data)") from error


def text_column(column: pa.ChunkedArray, path: str, name: str) -> pa.ChunkedArray:
    """Any Parquet/CSV column as UTF-8 text, without guessing: lists are ``|``-joined."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return text_column(column.cast(kind.value_type), path, name)
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.large_string())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _joined_lists(column, path, name)
    if pa.types.is_timestamp(kind):
        naive = column.cast(pa.timestamp(kind.unit)) if kind.tz else column
        text = pc.utf8_replace_slice(naive.cast(pa.string()), 10, 11, "T")
        return pc.binary_join_element_wise(text, "Z", "") if kind.tz else text
    if pa.types.is_floating(kind):
        return _floats_as_text(column)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return column.cast(pa.string())
        except pa.ArrowInvalid as error:
            raise InputError(path, f"column {name} holds bytes that are not UTF-8") from error
    if (
        pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_date(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    ):
        return column.cast(pa.string())
    raise InputError(path, f"column {name} has an unsupported Parquet type ({kind})")


def _joined_lists(column: pa.ChunkedArray, path: str, name: str) -> pa.ChunkedArray:
    value_type = column.type.value_type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        raise InputError(path, f"column {name} is a list of {value_type}, expected strings")
    chunks = []
    for chunk in column.chunks:
        values = chunk.values.fill_null("")
        offsets = chunk.offsets
        lists = type(chunk).from_arrays(offsets, values, mask=chunk.is_null())
        chunks.append(pc.binary_join(lists, contract.LIST_SEPARATOR))
    return pa.chunked_array(chunks, type=pa.string() if chunks else None)


def _floats_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Whole-number floats (a column with gaps written by pandas) as integers, others as text."""
    finite = pc.drop_null(column)
    whole = len(finite) == 0 or bool(pc.all(pc.equal(pc.floor(finite), finite)).as_py())
    if whole:
        return column.cast(pa.int64(), safe=False).cast(pa.string())
    return column.cast(pa.string())
