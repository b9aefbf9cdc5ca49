"""How the look-back commands print records: a table on a terminal, or JSON, or CSV."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from customer_sync.adapters.csv_safety import neutralised

FORMATS: Final = ("table", "json", "csv")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run (``adapters.csv_safety``, as every CSV we write)."""
    return neutralised("" if value is None else str(value))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str, title: str) -> str:
    """``rows`` as text in ``fmt`` (json keeps every key; table and csv the ``columns``)."""
    if fmt == "json":
        return orjson.dumps(list(rows), option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([csv_cell(_cell(row.get(c))) for c in columns])
        return out.getvalue().rstrip("\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console = Console(file=io.StringIO(), width=1000 if not sys.stdout.isatty() else None)
    console.print(table)
    return console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]
