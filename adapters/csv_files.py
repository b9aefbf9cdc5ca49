"""CSV extracts: the header checked (empty, encoding, delimiter), the rows read as text.

UTF-8 (a BOM is accepted), comma-separated, RFC 4180 quoting (``""`` escapes a quote, quoted
cells may span lines), optionally gzip-compressed. pyarrow reads the rows (all columns as
strings, empty cells missing); when it cannot, the slow paths here find the line to name,
and no message ever quotes a cell.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.csv as pacsv

from adapters.files import is_local, local_path, open_binary
from schemas.errors import InputError

OTHER_DELIMITERS: Final = {";": "semicolon", "\t": "tab", "|": "pipe", ":": "colon"}
"""Delimiters a header is tried with when commas do not split it, and their names."""
BLOCK_BYTES: Final = 16 << 20
HEADER_PEEK_BYTES: Final = 1 << 20


def csv_header(path: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The header's column names, after checking the file is non-empty UTF-8 with commas."""
    try:
        with open_binary(path, storage_options) as stream:
            head = stream.read(HEADER_PEEK_BYTES)
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
        for delimiter, label in OTHER_DELIMITERS.items():
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


def _options(
    columns: Sequence[str], keep: Sequence[str], block_bytes: int | None
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions, list[int]]:
    """pyarrow options that read the data rows as text; the list counts invalid rows."""
    invalid: list[int] = []

    def _count_invalid(row: Any) -> str:
        invalid.append(row.actual_columns)
        return "skip"

    read = pacsv.ReadOptions(
        column_names=list(columns),
        skip_rows=1,
        block_size=block_bytes or BLOCK_BYTES,
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
        column_types={name: pa.string() for name in columns},
        include_columns=list(keep),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        check_utf8=True,
    )
    return read, parse, convert, invalid


def _source(path: str, storage_options: Mapping[str, Any] | None) -> Any:
    """What pyarrow should read: the local path itself (fastest), else an fsspec stream."""
    if is_local(path, storage_options):
        return local_path(path)
    return open_binary(path, storage_options)


def read_csv_text(
    path: str,
    columns: Sequence[str],
    keep: Sequence[str],
    storage_options: Mapping[str, Any] | None,
) -> pa.Table:
    """The ``keep`` columns of the data rows, every one as text (``columns``: the header)."""
    read, parse, convert, invalid = _options(columns, keep, None)
    source = _source(path, storage_options)
    try:
        table = pacsv.read_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
    except (pa.ArrowInvalid, OSError) as error:
        raise _error(path, storage_options, error) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(path, storage_options, len(columns), len(invalid))
    return table


def csv_text_batches(
    path: str,
    columns: Sequence[str],
    keep: Sequence[str],
    storage_options: Mapping[str, Any] | None,
    block_rows: int,
) -> Iterator[pa.RecordBatch]:
    """Like ``read_csv_text``, one record batch at a time (sized near ``block_rows``)."""
    # blocks of about 200 bytes a row keep each read near the requested number of rows
    block_bytes = max(1 << 20, min(block_rows * 200, 256 << 20))
    read, parse, convert, invalid = _options(columns, keep, block_bytes)
    source = _source(path, storage_options)
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
                raise _wrong_field_count(path, storage_options, len(columns), len(invalid))
            yield batch
    except (pa.ArrowInvalid, OSError) as error:
        raise _error(path, storage_options, error) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(path, storage_options, len(columns), len(invalid))


def _error(path: str, storage_options: Mapping[str, Any] | None, error: Exception) -> InputError:
    """One clear message for a CSV pyarrow could not read (never quoting its cells)."""
    text = str(error)
    if "UTF8" in text or "UTF-8" in text:
        line = _first_non_utf8_line(path, storage_options)
        where = f" at line {line}" if line else ""
        return InputError(
            path,
            f"is not UTF-8: undecodable bytes{where} (re-export the file as UTF-8)",
        )
    if isinstance(error, OSError) and not isinstance(error, pa.ArrowInvalid):
        return InputError(path, f"cannot be read ({type(error).__name__})")
    # pyarrow's parse errors may end with the offending row's text: keep only the first clause
    summary = text.split(":", 1)[0].strip() or "unreadable"
    return InputError(path, f"is not a readable CSV file ({summary})")


def _wrong_field_count(
    path: str, storage_options: Mapping[str, Any] | None, expected: int, count: int
) -> InputError:
    first = _first_misshapen_record(path, storage_options, expected)
    where = ""
    if first is not None:
        row, line, fields = first
        where = f"; the first is data row {row} (line {line}) with {fields} field(s)"
    return InputError(
        path,
        f"{count} row(s) do not have the header's {expected} fields{where}. "
        "Check quoting and the delimiter",
    )


def _first_non_utf8_line(path: str, storage_options: Mapping[str, Any] | None) -> int | None:
    """1-based line of the first bytes that are not UTF-8 (slow: used only on that error)."""
    with open_binary(path, storage_options) as stream:
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
    with open_binary(path, storage_options) as stream:
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
