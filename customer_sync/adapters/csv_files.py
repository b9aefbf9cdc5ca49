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
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.csv as pacsv

from customer_sync.adapters.files import READ_ERRORS, is_local, local_path, open_binary, unreadable
from customer_sync.schemas.errors import InputError

OTHER_DELIMITERS: Final = {";": "semicolon", "\t": "tab", "|": "pipe", ":": "colon"}
"""Delimiters a header is tried with when commas do not split it, and their names."""
BLOCK_BYTES: Final = 16 << 20
HEADER_PEEK_BYTES: Final = 1 << 20
MAX_HEADER_BYTES: Final = 64 << 10
"""A header row longer than this is refused: the contract's longest header is ~250 bytes."""
MAX_COLUMNS: Final = 1000
"""A header with more columns than this is refused (the contract has at most 11)."""
SCANNED_FIELD_CHARS: Final = 64 << 20
"""The slow paths read fields up to this size (the ``csv`` module's default is 128 KiB)."""


def csv_header(path: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The header's column names, after checking the file is non-empty UTF-8 with commas,
    LF or CRLF line endings, and a header of sane size (``MAX_HEADER_BYTES``, ``MAX_COLUMNS``)."""
    try:
        with open_binary(path, storage_options) as stream:
            head = stream.read(HEADER_PEEK_BYTES)
    except READ_ERRORS as error:
        raise unreadable(path, error) from error
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(path, "is UTF-16, not UTF-8 (re-export the file as UTF-8)")
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    if not head.strip():
        raise InputError(path, "file is empty (not even a header row)")
    line, ending = _first_line(head)
    if b"\x00" in line:
        # UTF-16 without a BOM: every other byte of ASCII text is NUL
        if line.count(b"\x00") * 3 >= len(line):
            raise InputError(
                path,
                "looks UTF-16 (NUL bytes between characters), not UTF-8 "
                "(re-export the file as UTF-8)",
            )
        raise InputError(path, "header row holds NUL bytes (is this a CSV file?)")
    if len(line) > MAX_HEADER_BYTES:
        raise InputError(
            path,
            f"header row is longer than {MAX_HEADER_BYTES // 1024} KiB "
            "(an extract's header is well under 1 KiB; is this the right file?)",
        )
    if ending == b"\r":
        raise InputError(
            path, "has bare CR line endings (classic Mac); re-export it with LF or CRLF endings"
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            path, "is not UTF-8: undecodable bytes at line 1 (re-export the file as UTF-8)"
        ) from error
    names = _split_header(text, ",")
    if len(names) > MAX_COLUMNS:
        raise InputError(
            path, f"header has {len(names):,} columns, more than the {MAX_COLUMNS:,} allowed"
        )
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


def _first_line(head: bytes) -> tuple[bytes, bytes]:
    """The first line of ``head`` and what ended it (``\\n``, ``\\r\\n``, ``\\r``, or
    ``b""`` when ``head`` holds no line break)."""
    breaks = [at for at in (head.find(b"\n"), head.find(b"\r")) if at >= 0]
    if not breaks:
        return head, b""
    at = min(breaks)
    if head[at : at + 2] == b"\r\n":
        return head[:at], b"\r\n"
    return head[:at], head[at : at + 1]


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
    except (pa.ArrowInvalid, *READ_ERRORS) as error:
        raise _error(path, storage_options, error, BLOCK_BYTES) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(path, storage_options, len(columns), len(invalid))
    _refuse_an_unclosed_quote(path, storage_options, table)
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
        held: pa.RecordBatch | None = None  # the last batch is checked before it is given
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            if invalid:
                raise _wrong_field_count(path, storage_options, len(columns), len(invalid))
            if held is not None:
                yield held
            held = batch
        if held is not None and not invalid:
            _refuse_an_unclosed_quote(path, storage_options, held)
            yield held
    except (pa.ArrowInvalid, *READ_ERRORS) as error:
        raise _error(path, storage_options, error, block_bytes) from error
    finally:
        if hasattr(source, "close"):
            source.close()
    if invalid:
        raise _wrong_field_count(path, storage_options, len(columns), len(invalid))


def _error(
    path: str, storage_options: Mapping[str, Any] | None, error: Exception, block_bytes: int
) -> InputError:
    """One clear message for a CSV pyarrow could not read (never quoting its cells)."""
    text = str(error)
    if "UTF8" in text or "UTF-8" in text:
        line = _first_non_utf8_line(path, storage_options)
        where = f" at line {line}" if line else ""
        return InputError(
            path,
            f"is not UTF-8: undecodable bytes{where} (re-export the file as UTF-8)",
        )
    if "straddl" in text:
        # one record is bigger than the reader's block: name it, or the quote that ran on
        scan = _scan_records(path, storage_options, 0, block_bytes)
        if scan.unclosed_quote_line is not None:
            return _unclosed_quote(path, scan.unclosed_quote_line)
        where = ""
        if scan.oversized:
            where = f": data row {scan.oversized[0]} (line {scan.oversized[1]})"
        return InputError(
            path,
            f"a row is larger than {block_bytes >> 20} MiB{where}; no row of an extract "
            "comes near that (check quoting)",
        )
    if not isinstance(error, pa.ArrowInvalid) and isinstance(error, READ_ERRORS):
        return unreadable(path, error)
    # pyarrow's parse errors may end with the offending row's text: keep only the first clause
    summary = text.split(":", 1)[0].strip() or "unreadable"
    return InputError(path, f"is not a readable CSV file ({summary})")


def _wrong_field_count(
    path: str, storage_options: Mapping[str, Any] | None, expected: int, count: int
) -> InputError:
    scan = _scan_records(path, storage_options, expected, None)
    if scan.unclosed_quote_line is not None:
        return _unclosed_quote(path, scan.unclosed_quote_line)
    where = ""
    if scan.misshapen is not None:
        row, line, fields = scan.misshapen
        where = f"; the first is data row {row} (line {line}) with {fields} field(s)"
    return InputError(
        path,
        f"{count} row(s) do not have the header's {expected} fields{where}. "
        "Check quoting and the delimiter",
    )


def _unclosed_quote(path: str, line: int) -> InputError:
    return InputError(
        path,
        f"a quoted field opened at line {line} is never closed (the rest of the file would "
        "be read as one cell). Check quoting",
    )


def _refuse_an_unclosed_quote(
    path: str, storage_options: Mapping[str, Any] | None, last: pa.Table | pa.RecordBatch
) -> None:
    """pyarrow reads a quote that is never closed as one last cell holding the rest of the
    file, rows and all (silently lost). Such a cell holds a line break: only then is the
    file scanned (a legitimate multi-line last cell costs one slow scan, nothing more)."""
    if last.num_rows == 0:
        return
    tail = last.slice(last.num_rows - 1)
    for column in tail.columns:
        value = column[0].as_py()
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            line = _scan_records(path, storage_options, 0, None).unclosed_quote_line
            if line is not None:
                raise _unclosed_quote(path, line)
            return


def _first_non_utf8_line(path: str, storage_options: Mapping[str, Any] | None) -> int | None:
    """1-based line of the first bytes that are not UTF-8 (slow: used only on that error)."""
    try:
        with open_binary(path, storage_options) as stream:
            for number, raw in enumerate(stream, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except READ_ERRORS:
        return None
    return None


@dataclass
class _Scan:
    """What a slow scan of a CSV's records found (rows are data rows, lines 1-based)."""

    misshapen: tuple[int, int, int] | None = None
    """(data row, line, fields) of the first record whose field count is wrong."""
    oversized: tuple[int, int] | None = None
    """(data row, line) of the first record larger than the limit asked for."""
    unclosed_quote_line: int | None = None
    """The line where a quoted field that runs to the end of the file opens."""


_SENTINEL: Final = "customer-sync end of file"


def _scan_records(
    path: str,
    storage_options: Mapping[str, Any] | None,
    expected: int,
    max_bytes: int | None,
) -> _Scan:
    """The slow path: every record read with the ``csv`` module (fields up to
    ``SCANNED_FIELD_CHARS``). A sentinel record is appended: if the file ends inside a
    quoted field, the sentinel is swallowed by it, which is how an unclosed quote shows."""
    scan = _Scan()
    previous_limit = csv.field_size_limit(SCANNED_FIELD_CHARS)
    try:
        with open_binary(path, storage_options) as stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
            lines = itertools.chain(text, ["\n", f'"{_SENTINEL}"\n'])
            reader = csv.reader(lines, strict=False)
            next(reader, None)
            row, start, last_start, last = 0, reader.line_num + 1, 0, None
            for record in reader:
                if record == [_SENTINEL]:
                    return scan
                if record:
                    row += 1
                    last_start, last = start, record
                    if expected and scan.misshapen is None and len(record) != expected:
                        scan.misshapen = (row, start, len(record))  # read on: a quote may
                    size = sum(len(f.encode()) + 1 for f in record) if max_bytes else 0
                    if max_bytes and scan.oversized is None and size > max_bytes:
                        scan.oversized = (row, start)
                start = reader.line_num + 1
            if last is not None:
                scan.unclosed_quote_line = last_start
    except csv.Error:
        # a field beyond SCANNED_FIELD_CHARS: a quote that runs on is by far the likeliest
        scan.unclosed_quote_line = start
    except READ_ERRORS:
        pass
    finally:
        csv.field_size_limit(previous_limit)
    return scan
