"""Parquet extracts: opened (locally or through fsspec), read by column, and made text.

``text_column`` turns any column a bank's Parquet may hold into text without guessing:
strings as they are, lists of strings ``|``-joined, integers, decimals and dates as written,
timestamps as ISO-8601 (``Z`` when the column is zoned), whole-number floats (pandas' way
of writing an integer column with gaps) as integers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from customer_sync.adapters.files import file_size, is_local, local_path, open_binary
from customer_sync.schemas import contract
from customer_sync.schemas.errors import InputError


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


MAX_COLUMNS: Final = 1000
"""A file with more columns than this is refused (the contract has at most 11)."""
TEXT_ONLY_COLUMNS: Final = frozenset(
    {
        "sourceCustomerId",
        "sourceParentCustomerId",
        "sourceAccountId",
        "sourceCustomerIds",
        "primarySourceCustomerId",
        "sourcePortfolioId",
        "organizationId",
        "postalCode",
        "last4",
        "iin",
    }
)
"""Contract columns that must be written as text: a number has lost its leading zeros
(``00123`` is ``123``), and guessing how many there were would send a wrong id."""


def parquet_schema(path: str, storage_options: Mapping[str, Any] | None) -> pa.Schema:
    """The file's Arrow schema, from its footer (refused past ``MAX_COLUMNS`` columns)."""
    with parquet_file(path, storage_options) as parquet:
        schema = parquet.schema_arrow
    if len(schema) > MAX_COLUMNS:
        raise InputError(
            path, f"has {len(schema):,} columns, more than the {MAX_COLUMNS:,} allowed"
        )
    return schema


def refuse_numbers_for_text(path: str, schema: pa.Schema, sources: Mapping[str, str]) -> None:
    """``InputError`` when a ``TEXT_ONLY_COLUMNS`` column (``sources``: contract -> file
    column) is not text in the file, or is a list whose items are not text."""
    for name, source in sources.items():
        if name not in TEXT_ONLY_COLUMNS:
            continue
        kind = schema.field(source).type
        items = ""
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            kind, items = kind.value_type, "a list of "
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if _is_text(kind):
            continue
        raise InputError(
            path,
            f"column {source} is {items}{kind}, but {name} must be text: leading zeros "
            "cannot be recovered from a number (write the column as strings)",
        )


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_null(kind)
    )


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
