"""A tiny valid extract as a bank would export it, to corrupt in tests (not a fixture module).

``raw_rows()`` is five customers with everything the contract allows: a joint account, a
joint account whose other holder is not in the extract, an account without cards, a
customer without accounts, a closed account with a closed card, a parent customer, leading
zeros, Namibia's ``NA``, dates with offsets and bare dates. ``write_files`` puts it on disk
as CSV (exact text, via the ``csv`` module) or Parquet; ``extract_of`` builds the ``Extract``
the readers would return, without I/O, for fast tests of the pure steps.
"""

from __future__ import annotations

import copy
import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from customer_sync.schemas import contract
from customer_sync.schemas.records import Extract
from customer_sync.transforms.normalise import normalise_table

Rows = dict[str, list[dict[str, str | None]]]
Fmt = Literal["csv", "parquet"]


def _customer(cid: str, **overrides: str | None) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "sourceCustomerId": cid,
        "sourceParentCustomerId": None,
        "organizationId": "00123",
        "postalCode": "02134",
        "country": "US",
        "customerCreationDate": "2019-03-04T10:15:00-05:00",
        "enrollmentStartDate": "2019-03-05",
        "enrollmentEndDate": None,
        "enrollmentOptInStatus": "ACTIVE",
        "alertOptInStatus": "NEW|EXPIRING",
        "targetingIndicator": "TARGET",
    }
    row.update(overrides)
    return row


def _account(
    aid: str, primary: str, holders: str | None, **overrides: str | None
) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "sourceAccountId": aid,
        "sourceCustomerIds": holders,
        "primarySourceCustomerId": primary,
        "status": "OPEN",
        "type": "DDA",
        "sourcePortfolioId": "PF-001",
        "accountOpenDate": "2019-03-05T09:00:00Z",
        "accountCloseDate": None,
    }
    row.update(overrides)
    return row


def _card(
    aid: str, cid: str, last4: str, iin: str, network: str, **overrides: str | None
) -> dict[str, str | None]:
    row: dict[str, str | None] = {
        "sourceAccountId": aid,
        "sourceCustomerId": cid,
        "last4": last4,
        "iin": iin,
        "cardType": "DEBIT",
        "status": "OPEN",
        "networkIdentifier": network,
        "openDate": "2019-03-06T12:00:00+02:00",
        "closeDate": None,
    }
    row.update(overrides)
    return row


def raw_rows() -> Rows:
    """The valid extract, row by row (``None`` = empty cell). A fresh copy every call."""
    return copy.deepcopy(
        {
            "customers": [
                _customer("C001"),
                _customer("C002", country="GB", postalCode="SW1A 1AA", alertOptInStatus="ALL"),
                _customer("C003", sourceParentCustomerId="C001", postalCode="00501"),
                _customer(
                    "C004",
                    country="NA",
                    postalCode="9000",
                    enrollmentEndDate="2021-01-01 08:00:00",
                    enrollmentOptInStatus="INACTIVE",
                    alertOptInStatus=None,
                    targetingIndicator="DO_NOT_TARGET",
                ),
                _customer("C005", country="CA", postalCode="K1A 0B1", organizationId="0042"),
            ],
            "accounts": [
                _account("A100", "C001", None),
                _account("A200", "C001", "C003|C001", type="CRD"),
                _account("A300", "C002", "C002", type="SAV"),
                _account(
                    "A400",
                    "C005",
                    "C005",
                    status="CLOSED",
                    type="CRD",
                    accountCloseDate="2022-06-30T17:00:00-04:00",
                ),
                _account("A500", "C002", "C002|C999", type="CRD"),
            ],
            "cards": [
                _card("A100", "C001", "0042", "412345", "4"),
                _card("A200", "C001", "1234", "51234567", "5", cardType="CREDIT"),
                _card("A200", "C003", "5678", "371234", "3", cardType="CREDIT"),
                _card(
                    "A400",
                    "C005",
                    "9999",
                    "601100",
                    "6",
                    cardType="CREDIT",
                    status="CLOSED",
                    closeDate="2022-06-30",
                ),
                _card("A500", "C999", "1111", "412345", "4", cardType="CREDIT"),
                _card("A500", "C002", "2222", "412346", "4", cardType="CREDIT"),
            ],
        }
    )


def raw_frames(rows: Rows | None = None) -> dict[str, pd.DataFrame]:
    """The rows as text frames with every contract column, as a bank would export them."""
    rows = raw_rows() if rows is None else rows
    return {
        table: pd.DataFrame(
            {
                name: pd.Series([row.get(name) for row in rows[table]], dtype="str")
                for name in contract.COLUMNS[table]
            }
        )
        for table in contract.TABLES
    }


def extract_of(rows: Rows | None = None, files: Mapping[str, str] | None = None) -> Extract:
    """The Extract the readers would return for these rows (empty cells missing, ``_row``)."""
    frames = {}
    for table, frame in raw_frames(rows).items():
        frame = frame.replace("", np.nan)
        frame[contract.ROW_COLUMN] = np.arange(1, len(frame) + 1, dtype=np.int64)
        frames[table] = frame
    return Extract(
        customers=frames["customers"],
        accounts=frames["accounts"],
        cards=frames["cards"],
        files=dict(files or {t: f"{t}.csv" for t in contract.TABLES}),
    )


def normalised(table: str, rows: Rows | None = None) -> pd.DataFrame:
    """The normalised frame of one table of these rows."""
    return normalise_table(extract_of(rows).table(table), table).frame


def write_files(
    rows: Rows | None,
    folder: Path,
    fmt: Fmt,
    *,
    tables: Iterable[str] = contract.TABLES,
    drop_columns: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Path]:
    """Write the rows as ``<folder>/<table>.<fmt>``; list cells stay ``|``-joined text."""
    rows = raw_rows() if rows is None else rows
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table in tables:
        dropped = set((drop_columns or {}).get(table, ()))
        columns = [c for c in contract.COLUMNS[table] if c not in dropped]
        extra = [k for row in rows[table] for k in row if k not in contract.COLUMNS[table]]
        columns += list(dict.fromkeys(extra))
        path = folder / f"{table}.{fmt}"
        if fmt == "csv":
            write_csv(path, columns, [[row.get(c) for c in columns] for row in rows[table]])
        else:
            data = {c: pa.array([row.get(c) for row in rows[table]], pa.string()) for c in columns}
            pq.write_table(pa.table(data), path)
        paths[table] = path
    return paths


def write_csv(path: Path, header: list[str], records: Iterable[Iterable[str | None]]) -> Path:
    """A UTF-8 CSV with minimal RFC 4180 quoting; ``None`` is an empty cell."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        for record in records:
            writer.writerow(["" if value is None else value for value in record])
    return path
