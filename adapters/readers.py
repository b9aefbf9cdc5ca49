"""Read the flat extracts: a folder (local or any fsspec URL) or three explicit paths.

Every column is read as TEXT (``00123`` stays ``00123``), empty cells become missing, and
``_row`` numbers the data rows from 1 (header excluded). Optional contract columns that a
file leaves out are added as all-missing; unknown columns are reported and dropped. A file
that cannot be used at all raises ``schemas.errors.InputError`` with one clear message that
never quotes a cell (cells may hold card data).

CSV: UTF-8 (a BOM is accepted), comma-separated, RFC 4180 quoting (``""`` escapes a quote,
quoted cells may span lines), optionally gzip-compressed (``.csv.gz``). Parquet: string
columns as they are; lists of strings ``|``-joined; numbers, dates and timestamps as text.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Final, Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from schemas import contract
from schemas.columns import TEXT_DTYPE, text_series
from schemas.errors import ConfigError, InputError
from schemas.records import Extract

Format = Literal["csv", "parquet"]
Rename = Mapping[str, str] | Mapping[str, Mapping[str, str]]

SUFFIXES: Final[dict[str, Format]] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File name endings the readers recognise, and the format each one means."""

_OTHER_DELIMITERS: Final = {";": "semicolon", "\t": "tab", "|": "pipe", ":": "colon"}
_CSV_BLOCK_BYTES: Final = 16 << 20
_HEADER_PEEK_BYTES: Final = 1 << 20


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
    fs, root = _filesystem(folder, storage_options)
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
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    layout = _open_layout(os.fspath(path), table, rename, storage_options)
    if layout.fmt == "csv":
        batches = _csv_batches(layout, storage_options, block_rows)
    else:
        batches = _parquet_batches(layout, storage_options, block_rows)
    next_row = 1
    for block in _rebatch(batches, block_rows):
        yield _raw_frame(block, layout, next_row)
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
    repeated = sorted({name for name in named if named.count(name) > 1})
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
        f"{by_lower[name.lower()]!r} -> {name}" for name in missing if name.lower() in by_lower
    ]
    if hints:
        message += (
            f" (names are case- and space-sensitive; did you mean {', '.join(hints)}? "
            "fix the header or pass --rename)"
        )
    else:
        shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
        message += f" (the file has: {shown or 'no columns'})"
    return message


def _open_layout(
    path: str, table: str, rename: Rename | None, storage_options: Mapping[str, Any] | None
) -> _Layout:
    fmt = table_format(path)
    fs, fs_path = _filesystem(path, storage_options)
    try:
        exists = fs.isfile(fs_path)
    except OSError as error:
        raise InputError(path, f"cannot be reached ({type(error).__name__})") from error
    if not exists:
        raise InputError(path, "file not found")
    if fmt == "csv":
        return _layout(path, table, fmt, _csv_header(path, storage_options), rename)
    with _parquet_file(path, storage_options) as parquet:
        names = list(parquet.schema_arrow.names)
    return _layout(path, table, fmt, names, rename)


def _filesystem(
    path: str, storage_options: Mapping[str, Any] | None
) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, fs_path = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    except (ImportError, ValueError) as error:
        raise InputError(path, f"cannot open this location ({error})") from error
    return fs, fs_path


def _is_local(path: str, storage_options: Mapping[str, Any] | None) -> bool:
    fs, _ = _filesystem(path, storage_options)
    return isinstance(fs, LocalFileSystem)


def _open_binary(path: str, storage_options: Mapping[str, Any] | None) -> IO[bytes]:
    compression = "gzip" if path.lower().endswith(".gz") else None
    opened: IO[bytes] = fsspec.open(
        path, "rb", compression=compression, **dict(storage_options or {})
    ).open()
    return opened


# --- CSV -------------------------------------------------------------------------------------


def _csv_header(path: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The header's column names, after checking the file is non-empty UTF-8 with commas."""
    try:
        with _open_binary(path, storage_options) as stream:
            head = stream.read(_HEADER_PEEK_BYTES)
    except (OSError, EOFError) as error:  # gzip errors are OSErrors
        raise InputError(path, f"cannot be read ({type(error).__name__})") from error
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(path, "is UTF-16, not UTF-8 (re-export the file as UTF-8)")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if not head.strip():
        raise InputError(path, "file is empty (not even a header row)")
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            path, "is not UTF-8: undecodable bytes at line 1 (re-export the file as UTF-8)"
        ) from error
    names = _split_header(text, ",")
    if len(names) == 1:
        for delimiter, label in _OTHER_DELIMITERS.items():
            if len(_split_header(text, delimiter)) > 1:
                raise InputError(
                    path,
                    f"looks {label}-delimited ({delimiter!r}), but extracts must be "
                    "comma-separated",
                )
    if any(not name.strip() for name in names):
        raise InputError(path, "header has an empty column name")
    return names


def _split_header(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter, quotechar='"', strict=False), [])


def _csv_options(
    layout: _Layout, block_bytes: int | None
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions, list[int]]:
    """pyarrow options that read the data rows as text; the list counts invalid rows."""
    invalid: list[int] = []

    def _count_invalid(row: Any) -> str:
        invalid.append(row.actual_columns)
        return "skip"

    read = pacsv.ReadOptions(
        column_names=list(layout.file_columns),
        skip_rows=1,
        block_size=block_bytes or _CSV_BLOCK_BYTES,
        use_threads=True,
    )
    parse = pacsv.ParseOptions(
        delimiter=",",
        quote_char='"',
        double_quote=True,
        escape_char=False,
        newlines_in_values=True,
        ignore_empty_lines=True,
        invalid_row_handler=_count_invalid,
    )
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in layout.file_columns},
        include_columns=list(layout.sources.values()),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        check_utf8=True,
    )
    return read, parse, convert, invalid


def _csv_source(layout: _Layout, storage_options: Mapping[str, Any] | None) -> Any:
    """What pyarrow should read: the local path itself (fastest), else an fsspec stream."""
    if _is_local(layout.path, storage_options):
        return os.path.expanduser(layout.path.removeprefix("file://"))
    return _open_binary(layout.path, storage_options)


def _read_csv(layout: _Layout, storage_options: Mapping[str, Any] | None) -> pa.Table:
    read, parse, convert, invalid = _csv_options(layout, None)
    source = _csv_source(layout, storage_options)
    try:
        table = pacsv.read_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
    except (pa.ArrowInvalid, OSError) as error:
        raise _csv_error(layout, storage_options, error) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(layout, storage_options, len(invalid))
    return table


def _csv_batches(
    layout: _Layout, storage_options: Mapping[str, Any] | None, block_rows: int
) -> Iterator[pa.RecordBatch]:
    # blocks of about 200 bytes a row keep each read near the requested number of rows
    block_bytes = max(1 << 20, min(block_rows * 200, 256 << 20))
    read, parse, convert, invalid = _csv_options(layout, block_bytes)
    source = _csv_source(layout, storage_options)
    try:
        reader = pacsv.open_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if invalid:
                raise _wrong_field_count(layout, storage_options, len(invalid))
            yield batch
    except (pa.ArrowInvalid, OSError) as error:
        raise _csv_error(layout, storage_options, error) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(layout, storage_options, len(invalid))


def _csv_error(
    layout: _Layout, storage_options: Mapping[str, Any] | None, error: Exception
) -> InputError:
    """One clear message for a CSV pyarrow could not read (never quoting its cells)."""
    text = str(error)
    if "UTF8" in text or "UTF-8" in text:
        line = _first_non_utf8_line(layout.path, storage_options)
        where = f" at line {line}" if line else ""
        return InputError(
            layout.path,
            f"is not UTF-8: undecodable bytes{where} (re-export the file as UTF-8)",
        )
    if isinstance(error, OSError) and not isinstance(error, pa.ArrowInvalid):
        return InputError(layout.path, f"cannot be read ({type(error).__name__})")
    # pyarrow's parse errors may end with the offending row's text: keep only the first clause
    summary = text.split(":", 1)[0].strip() or "unreadable"
    return InputError(layout.path, f"is not a readable CSV file ({summary})")


def _wrong_field_count(
    layout: _Layout, storage_options: Mapping[str, Any] | None, count: int
) -> InputError:
    expected = len(layout.file_columns)
    first = _first_misshapen_record(layout.path, storage_options, expected)
    where = ""
    if first is not None:
        row, line, fields = first
        where = f"; the first is data row {row} (line {line}) with {fields} field(s)"
    return InputError(
        layout.path,
        f"{count} row(s) do not have the header's {expected} fields{where}. "
        "Check quoting and the delimiter",
    )


def _first_non_utf8_line(path: str, storage_options: Mapping[str, Any] | None) -> int | None:
    """1-based line of the first bytes that are not UTF-8 (slow: used only on that error)."""
    with _open_binary(path, storage_options) as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _first_misshapen_record(
    path: str, storage_options: Mapping[str, Any] | None, expected: int
) -> tuple[int, int, int] | None:
    """(data row, line, fields) of the first record whose field count is wrong (slow path)."""
    with _open_binary(path, storage_options) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, strict=False)
        next(reader, None)
        row = 0
        for record in reader:
            if not record:
                continue
            row += 1
            if len(record) != expected:
                return row, reader.line_num, len(record)
    return None


# --- Parquet ------------------------------------------------------------------------------------


@contextmanager
def _parquet_file(path: str, storage_options: Mapping[str, Any] | None) -> Iterator[pq.ParquetFile]:
    """The Parquet file, open for as long as the block runs (remote streams are closed)."""
    stream = None if _is_local(path, storage_options) else _open_binary(path, storage_options)
    source: Any = stream if stream is not None else os.path.expanduser(path.removeprefix("file://"))
    try:
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as error:
            if _size(path, storage_options) == 0:
                raise InputError(path, "file is empty (0 bytes)") from error
            raise InputError(
                path, "is not a readable Parquet file (corrupt or not Parquet)"
            ) from error
        yield parquet
    finally:
        if stream is not None:
            stream.close()


def _size(path: str, storage_options: Mapping[str, Any] | None) -> int | None:
    fs, fs_path = _filesystem(path, storage_options)
    try:
        return int(fs.size(fs_path))
    except (OSError, TypeError):
        return None


def _read_parquet(layout: _Layout, storage_options: Mapping[str, Any] | None) -> pa.Table:
    with _parquet_file(layout.path, storage_options) as parquet:
        try:
            table: pa.Table = parquet.read(columns=list(layout.sources.values()))
        except (pa.ArrowException, OSError) as error:
            raise InputError(
                layout.path, "is not a readable Parquet file (corrupt data)"
            ) from error
    return table


def _parquet_batches(
    layout: _Layout, storage_options: Mapping[str, Any] | None, block_rows: int
) -> Iterator[pa.RecordBatch]:
    with _parquet_file(layout.path, storage_options) as parquet:
        try:
            yield from parquet.iter_batches(
                batch_size=block_rows, columns=list(layout.sources.values())
            )
        except (pa.ArrowException, OSError) as error:
            raise InputError(
                layout.path, "is not a readable Parquet file (corrupt data)"
            ) from error


# --- Arrow -> raw text frame ---------------------------------------------------------------


def _read_whole(layout: _Layout, storage_options: Mapping[str, Any] | None) -> pd.DataFrame:
    if layout.fmt == "csv":
        table = _read_csv(layout, storage_options)
    else:
        table = _read_parquet(layout, storage_options)
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
            columns[name] = text_series(_as_text(table.column(source), layout.path, source), index)
    frame = pd.DataFrame(columns, index=index)
    frame[contract.ROW_COLUMN] = np.arange(first_row, first_row + rows, dtype=np.int64)
    return frame


def _as_text(column: pa.ChunkedArray, path: str, name: str) -> pa.ChunkedArray:
    """Any Parquet/CSV column as UTF-8 text, without guessing: lists are ``|``-joined."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _as_text(column.cast(kind.value_type), path, name)
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
