"""Read the flat extracts: a folder (local or any fsspec URL) or three explicit paths.

Every column is read as TEXT (``00123`` stays ``00123``), empty cells become missing, and
``_row`` numbers the data rows from 1 (header excluded). Optional contract columns that a
file leaves out are added as all-missing; unknown columns are reported and dropped. A file
that cannot be used at all raises ``schemas.errors.InputError`` with one clear message that
never quotes a cell (cells may hold card data).

The formats themselves are read by ``adapters.csv_files`` and ``adapters.parquet_files``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa

from customer_sync.adapters.csv_files import csv_header, csv_text_batches, read_csv_text
from customer_sync.adapters.files import filesystem, not_a_regular_file
from customer_sync.adapters.parquet_files import (
    parquet_batches,
    parquet_schema,
    read_parquet_columns,
    refuse_numbers_for_text,
    text_column,
)
from customer_sync.schemas import contract
from customer_sync.schemas.columns import TEXT_DTYPE, text_series
from customer_sync.schemas.errors import ConfigError, InputError
from customer_sync.schemas.records import Extract
from customer_sync.transforms.card_shape import shown_name

Format = Literal["csv", "parquet"]
Rename = Mapping[str, str] | Mapping[str, Mapping[str, str]]

SUFFIXES: Final[dict[str, Format]] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File name endings the readers recognise, and the format each one means."""


# --- where the tables are ------------------------------------------------------------------


def table_format(path: str) -> Format:
    """The format a file's name announces; ``InputError`` for any other ending."""
    lowered = path.lower()
    for suffix, fmt in SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    raise InputError(path, "unsupported file type (expected .csv, .csv.gz or .parquet)")


def locate_tables(
    source: str | os.PathLike[str] | None = None,
    *,
    customers: str | os.PathLike[str] | None = None,
    accounts: str | os.PathLike[str] | None = None,
    cards: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The file of each table: explicit paths win, the rest are looked up in ``source``."""
    explicit = {"customers": customers, "accounts": accounts, "cards": cards}
    found = {name: os.fspath(path) for name, path in explicit.items() if path is not None}
    wanted = [name for name in contract.TABLES if name not in found]
    if wanted and source is None:
        raise InputError(
            ", ".join(wanted), "no source folder given and no explicit path for this table"
        )
    if wanted:
        found.update(_tables_in_folder(os.fspath(source or ""), wanted, storage_options))
    return {name: found[name] for name in contract.TABLES}


def _tables_in_folder(
    folder: str, wanted: list[str], storage_options: Mapping[str, Any] | None
) -> dict[str, str]:
    fs, root = filesystem(folder, storage_options)
    try:
        if not fs.isdir(root):
            raise InputError(folder, "folder not found" if not fs.exists(root) else "not a folder")
        names = {entry.rstrip("/").rsplit("/", 1)[-1]: entry for entry in fs.ls(root, detail=False)}
    except (OSError, ValueError) as error:
        raise InputError(folder, f"cannot list folder ({type(error).__name__})") from error
    base = folder.rstrip("/")
    found: dict[str, str] = {}
    for table in wanted:
        matches = sorted(f"{table}{suffix}" for suffix in SUFFIXES if f"{table}{suffix}" in names)
        if not matches:
            expected = " or ".join(f"{table}{suffix}" for suffix in (".csv", ".parquet"))
            raise InputError(folder, f"no {expected} in this folder")
        if len(matches) > 1:
            raise InputError(
                folder,
                f"holds more than one file for the {table} table ({', '.join(matches)}); "
                "keep exactly one",
            )
        found[table] = f"{base}/{matches[0]}"
    return found


# --- the whole extract ---------------------------------------------------------------------


def read_extract(
    source: str | os.PathLike[str] | None = None,
    *,
    customers: str | os.PathLike[str] | None = None,
    accounts: str | os.PathLike[str] | None = None,
    cards: str | os.PathLike[str] | None = None,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Extract:
    """The three tables as raw text frames, with the files they came from.

    ``rename`` maps a bank's column names to the partner's, either for every table
    (``{"cust_id": "sourceCustomerId"}``) or per table (``{"cards": {...}}``).
    """
    files = locate_tables(
        source,
        customers=customers,
        accounts=accounts,
        cards=cards,
        storage_options=storage_options,
    )
    frames: dict[str, pd.DataFrame] = {}
    ignored: dict[str, tuple[str, ...]] = {}
    for table, path in files.items():
        layout = _open_layout(path, table, rename, storage_options)
        frames[table] = _read_whole(layout, storage_options)
        if layout.ignored:
            ignored[table] = layout.ignored
    return Extract(
        customers=frames["customers"],
        accounts=frames["accounts"],
        cards=frames["cards"],
        files=files,
        ignored_columns=ignored,
    )


def read_table(
    path: str | os.PathLike[str],
    table: str,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One table as a raw text frame (contract columns in contract order, then ``_row``)."""
    layout = _open_layout(os.fspath(path), table, rename, storage_options)
    return _read_whole(layout, storage_options)


def ignored_columns(
    path: str | os.PathLike[str],
    table: str,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """The columns of a file that are not part of the contract (read from its header only)."""
    return _open_layout(os.fspath(path), table, rename, storage_options).ignored


def iter_table_blocks(
    path: str | os.PathLike[str],
    table: str,
    block_rows: int,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[pd.DataFrame]:
    """One table as raw text frames of ``block_rows`` rows (the last may be shorter).

    ``_row`` continues across blocks, so a block's rows keep their file row numbers.
    Memory is bounded by the block size. A header-only file yields no blocks.
    """
    layout = _open_layout(os.fspath(path), table, rename, storage_options)
    for block, first_row in _blocks(layout, block_rows, storage_options):
        yield _raw_frame(block, layout, first_row)


def iter_text_tables(
    path: str | os.PathLike[str],
    table: str,
    block_rows: int,
    *,
    rename: Rename | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """Like ``iter_table_blocks``, as Arrow tables (``text_table_schema``): for code that
    writes the rows on (the spill of ``chunking.partitioner``), a pandas frame in between
    would be built only to be taken apart again."""
    layout = _open_layout(os.fspath(path), table, rename, storage_options)
    schema = text_table_schema(table)
    for block, first_row in _blocks(layout, block_rows, storage_options):
        yield _text_table(block, layout, first_row, schema)


def text_table_schema(table: str) -> pa.Schema:
    """A raw table in Arrow: every contract column as (large) text, then ``_row``."""
    fields = [pa.field(name, pa.large_string()) for name in contract.COLUMNS[table]]
    return pa.schema([*fields, pa.field(contract.ROW_COLUMN, pa.int64())])


def _blocks(
    layout: _Layout, block_rows: int, storage_options: Mapping[str, Any] | None
) -> Iterator[tuple[pa.Table, int]]:
    """The file's kept columns in tables of ``block_rows`` rows, with the first one's _row."""
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    keep = list(layout.sources.values())
    if layout.fmt == "csv":
        batches = csv_text_batches(
            layout.path, layout.file_columns, keep, storage_options, block_rows
        )
    else:
        batches = parquet_batches(layout.path, keep, storage_options, block_rows)
    next_row = 1
    for block in _rebatch(batches, block_rows):
        yield block, next_row
        next_row += block.num_rows


def parse_rename(text: str | None) -> Rename | None:
    """The ``--rename`` option: a JSON file's path or inline JSON, ``{old: new}`` or
    ``{table: {old: new}}``; ``ConfigError`` when it is neither."""
    if text is None or not text.strip():
        return None
    source = "--rename"
    if not text.lstrip().startswith("{"):
        source = text
        try:
            with fsspec.open(text, "r", encoding="utf-8") as stream:
                text = stream.read()
        except (OSError, ValueError) as error:
            raise ConfigError(f"--rename: cannot read {source} ({type(error).__name__})") from error
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source}: not valid JSON ({error.msg}, line {error.lineno})") from error
    flat = isinstance(mapping, dict) and all(isinstance(v, str) for v in mapping.values())
    nested = isinstance(mapping, dict) and all(
        k in contract.TABLES and isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        for k, v in mapping.items()
    )
    if not (flat or nested):
        raise ConfigError(
            f"{source}: expected {{old: new}} or {{table: {{old: new}}}} with tables "
            f"{', '.join(contract.TABLES)}"
        )
    result: Rename = mapping
    return result


# --- layout: which file column feeds which contract column ------------------------------------


@dataclass(frozen=True)
class _Layout:
    path: str
    table: str
    fmt: Format
    file_columns: tuple[str, ...]
    """Every column of the file, as named in the file (after the header is decoded)."""
    sources: dict[str, str]
    """contract column -> file column, for the contract columns the file has."""
    ignored: tuple[str, ...]


def _renames_for(rename: Rename | None, table: str) -> dict[str, str]:
    if not rename:
        return {}
    if all(isinstance(value, Mapping) for value in rename.values()):
        unknown = set(rename) - set(contract.TABLES)
        if unknown:
            raise InputError("--rename", f"unknown table(s): {', '.join(sorted(unknown))}")
        per_table = rename.get(table, {})
        assert isinstance(per_table, Mapping)
        return {str(k): str(v) for k, v in per_table.items()}
    if not all(isinstance(value, str) for value in rename.values()):
        raise InputError(
            "--rename", "expected {old: new} or {table: {old: new}} with text names only"
        )
    return {str(k): str(v) for k, v in rename.items()}


def _layout(
    path: str, table: str, fmt: Format, file_columns: list[str], rename: Rename | None
) -> _Layout:
    if table not in contract.COLUMNS:
        raise ValueError(f"unknown table {table!r}")
    renames = _renames_for(rename, table)
    named = [renames.get(name, name) for name in file_columns]
    repeated = sorted(shown_name(n) for n, count in Counter(named).items() if count > 1)
    if repeated:
        after = " after --rename" if renames else ""
        raise InputError(path, f"column(s) appear more than once{after}: {', '.join(repeated)}")
    columns = contract.COLUMNS[table]
    optional = contract.OPTIONAL_COLUMNS[table]
    missing = [name for name in columns if name not in named and name not in optional]
    if missing:
        raise InputError(path, _missing_message(missing, named))
    sources = {new: old for old, new in zip(file_columns, named, strict=True) if new in columns}
    ignored = tuple(old for old, new in zip(file_columns, named, strict=True) if new not in columns)
    return _Layout(path, table, fmt, tuple(file_columns), sources, ignored)


def _missing_message(missing: list[str], found: list[str]) -> str:
    message = f"missing required column(s): {', '.join(missing)}"
    by_lower = {name.strip().lower(): name for name in found}
    hints = [
        f"{shown_name(by_lower[name.lower()])!r} -> {name}"
        for name in missing
        if name.lower() in by_lower
    ]
    if hints:
        message += (
            f" (names are case- and space-sensitive; did you mean {', '.join(hints)}? "
            "fix the header or pass --rename)"
        )
    else:
        shown = ", ".join(map(shown_name, found[:20])) + (", ..." if len(found) > 20 else "")
        message += f" (the file has: {shown or 'no columns'})"
    return message


def _open_layout(
    path: str, table: str, rename: Rename | None, storage_options: Mapping[str, Any] | None
) -> _Layout:
    fmt = table_format(path)
    fs, fs_path = filesystem(path, storage_options)
    try:
        exists = fs.isfile(fs_path)
    except OSError as error:
        raise InputError(path, f"cannot be reached ({type(error).__name__})") from error
    if not exists:
        raise not_a_regular_file(path, storage_options) or InputError(path, "file not found")
    if fmt == "csv":
        return _layout(path, table, fmt, csv_header(path, storage_options), rename)
    schema = parquet_schema(path, storage_options)
    layout = _layout(path, table, fmt, list(schema.names), rename)
    refuse_numbers_for_text(path, schema, layout.sources)
    return layout


# --- Arrow -> raw text frame ---------------------------------------------------------------


def _read_whole(layout: _Layout, storage_options: Mapping[str, Any] | None) -> pd.DataFrame:
    keep = list(layout.sources.values())
    if layout.fmt == "csv":
        table = read_csv_text(layout.path, layout.file_columns, keep, storage_options)
    else:
        table = read_parquet_columns(layout.path, keep, storage_options)
    return _raw_frame(table, layout, 1)


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Record batches regrouped into tables of exactly ``rows`` rows (the last may be short)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _raw_frame(table: pa.Table, layout: _Layout, first_row: int) -> pd.DataFrame:
    """Contract columns as text, in contract order, missing optional ones all-missing, then _row."""
    rows = table.num_rows
    index = pd.RangeIndex(rows)
    columns: dict[str, pd.Series] = {}
    for name in contract.COLUMNS[layout.table]:
        source = layout.sources.get(name)
        if source is None:
            columns[name] = pd.Series(np.full(rows, np.nan, dtype=object), index=index).astype(
                TEXT_DTYPE
            )
        else:
            columns[name] = text_series(
                text_column(table.column(source), layout.path, source), index
            )
    frame = pd.DataFrame(columns, index=index)
    frame[contract.ROW_COLUMN] = np.arange(first_row, first_row + rows, dtype=np.int64)
    return frame


def _text_table(table: pa.Table, layout: _Layout, first_row: int, schema: pa.Schema) -> pa.Table:
    """What ``_raw_frame`` holds, in Arrow: the same text, missing cells null."""
    rows = table.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    for name in contract.COLUMNS[layout.table]:
        source = layout.sources.get(name)
        if source is None:
            columns.append(pa.nulls(rows, pa.large_string()))
        else:
            text = text_column(table.column(source), layout.path, source)
            columns.append(text.cast(pa.large_string()))
    columns.append(pa.array(np.arange(first_row, first_row + rows, dtype=np.int64)))
    return pa.Table.from_arrays(columns, schema=schema)
