"""Realistic synthetic extracts of any size, as a bank would export them, and their writer.

Everything is vectorised (numpy draws, Arrow string kernels), so millions of customers take
seconds. Customers are generated in fixed chunks, each from its own seeded generator, so an
extract depends only on ``(n_customers, seed)`` and can be streamed to disk chunk by chunk.

What it holds, on average: about 1.5 accounts and 2 cards per customer; about 10% of
accounts are joint (a second holder anywhere in the extract); about 6% of customers have no
account and about 20% of accounts no card; closed accounts and cards carry close dates;
some customers have a parent customer. Text is as banks write it: ids, organization ids and
postal codes with leading zeros, date-times in mixed ISO-8601 forms (bare dates, ``Z``,
offsets such as ``+05:30``, a space instead of ``T``, fractions), ``sourceCustomerIds`` often
left empty for single-holder accounts. Every row is valid under the partner contract.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from customer_sync.schemas import contract

Fmt = Literal["csv", "parquet"]

CHUNK_CUSTOMERS: Final = 250_000
"""Customers generated per chunk (fixed: the output must not depend on how it is consumed)."""
WRITE_ROWS: Final = 500_000
"""Rows converted and written at a time."""

_DAY: Final = 86_400
_START: Final = int(np.datetime64("2005-01-01T00:00:00", "s").astype(np.int64))
_NOW: Final = int(np.datetime64("2025-06-01T00:00:00", "s").astype(np.int64))

_ORGANIZATIONS: Final = (("00412", 0.45), ("01004", 0.25), ("50004", 0.2), ("0042", 0.1))
_COUNTRIES: Final = (
    ("US", 0.85),
    ("CA", 0.05),
    ("GB", 0.04),
    ("DE", 0.02),
    ("PR", 0.01),
    ("IE", 0.01),
    ("NA", 0.01),
    ("MX", 0.01),
)
_POSTAL_POOLS: Final = {
    "CA": ("K1A 0B1", "M5V 2T6", "H2Y 1C6", "V6B 4Y8", "T2P 2M5"),
    "GB": ("SW1A 1AA", "EC1A 1BB", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT"),
    "DE": ("01067", "10115", "04109", "80331", "20095"),
    "PR": ("00601", "00725", "00901", "00969"),
    "IE": ("D02 X285", "T12 Y2KF", "H91 E2K3"),
    "NA": ("10001", "13001", "9000"),
    "MX": ("01000", "06600", "44100", "64000"),
}
_ALERTS: Final = (
    ("ALL", 0.3),
    ("", 0.2),
    ("NEW|EXPIRING", 0.15),
    ("NEW|ACTIVATED|REDEMPTION", 0.1),
    ("EXPIRING", 0.08),
    ("CLOSE_THE_LOOP|MISSED_OPPORTUNITY", 0.07),
    ("REDEMPTION|NEW", 0.05),
    ("ACTIVATED", 0.05),
)
_ACCOUNT_TYPES: Final = (
    ("DDA", 0.35),
    ("CRD", 0.3),
    ("SAV", 0.15),
    ("MMA", 0.05),
    ("PPD", 0.05),
    ("SBCRD", 0.04),
    ("SBDDA", 0.04),
    ("SBS", 0.02),
)
_ACCOUNT_STATUSES: Final = (("OPEN", 0.88), ("CLOSED", 0.08), ("DISPUTE", 0.02), ("FRAUD", 0.02))
_NETWORKS: Final = ((4, 0.55), (5, 0.35), (3, 0.06), (6, 0.04))
_ACCOUNTS_PER_CUSTOMER: Final = (0.06, 0.52, 0.28, 0.10, 0.04)
_CARDS_PER_ACCOUNT: Final = (0.2, 0.4, 0.27, 0.1, 0.03)
_OFFSETS: Final = ("+01:00", "+02:00", "-05:00", "-08:00", "+05:30", "-03:00", "+00:00")
_OFFSET_MINUTES: Final = np.array([60, 120, -300, -480, 330, -180, 0], dtype=np.int64)
_PORTFOLIOS: Final = tuple(f"PF-{n:03d}" for n in range(1, 41))


def synthetic_extract(n_customers: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Raw text frames (``customers``, ``accounts``, ``cards``) of ``n_customers`` customers."""
    parts: dict[str, list[pa.Table]] = {table: [] for table in contract.TABLES}
    for chunk in iter_synthetic_chunks(n_customers, seed):
        for table, data in chunk.items():
            parts[table].append(data)
    frames: dict[str, pd.DataFrame] = {}
    for table in contract.TABLES:
        if parts[table]:
            frames[table] = pa.concat_tables(parts[table]).to_pandas()
        else:
            frames[table] = pd.DataFrame(
                {name: pd.Series([], dtype="str") for name in contract.COLUMNS[table]}
            )
    return frames


def iter_synthetic_chunks(n_customers: int, seed: int = 0) -> Iterator[dict[str, pa.Table]]:
    """The extract of ``synthetic_extract`` as Arrow tables, one chunk of customers at a time."""
    if n_customers < 0:
        raise ValueError("n_customers must not be negative")
    for number, start in enumerate(range(0, n_customers, CHUNK_CUSTOMERS)):
        stop = min(start + CHUNK_CUSTOMERS, n_customers)
        rng = np.random.default_rng([seed, number])
        yield _chunk(rng, start, stop, n_customers)


def write_extract(
    frames: Mapping[str, pd.DataFrame], folder: str | os.PathLike[str], fmt: Fmt
) -> dict[str, Path]:
    """Write ``<folder>/<table>.<fmt>`` for each frame, a slice at a time; return the paths."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for table, frame in frames.items():
        columns = [name for name in frame.columns if name != contract.ROW_COLUMN]
        slices = (
            pa.Table.from_pandas(frame.iloc[at : at + WRITE_ROWS][columns], preserve_index=False)
            for at in range(0, max(len(frame), 1), WRITE_ROWS)
        )
        paths[table] = _write_tables(slices, out / f"{table}.{fmt}", fmt, table)
    return paths


class WrittenFile(NamedTuple):
    """A file written by ``write_synthetic_extract`` and its number of data rows."""

    path: Path
    rows: int


def write_synthetic_extract(
    folder: str | os.PathLike[str], n_customers: int, fmt: Fmt, seed: int = 0
) -> dict[str, WrittenFile]:
    """Generate and write an extract chunk by chunk (memory set by the chunk, not the size).

    The files hold exactly what ``synthetic_extract(n_customers, seed)`` returns."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {table: out / f"{table}.{fmt}" for table in contract.TABLES}
    writers = {table: _Writer(paths[table], fmt, table) for table in contract.TABLES}
    try:
        for chunk in iter_synthetic_chunks(n_customers, seed):
            for table, data in chunk.items():
                writers[table].write(data)
        if n_customers == 0:
            for table in contract.TABLES:
                writers[table].write(_empty(table))
    finally:
        for writer in writers.values():
            writer.close()
    return {table: WrittenFile(paths[table], writers[table].rows) for table in contract.TABLES}


# --- writing --------------------------------------------------------------------------------------


class _Writer:
    """A CSV or Parquet file written one Arrow table at a time (opened on the first one)."""

    def __init__(self, path: Path, fmt: Fmt, table: str) -> None:
        self.path, self.fmt, self.table = path, fmt, table
        self._writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, data: pa.Table) -> None:
        data = _as_text_table(data)
        if self.fmt == "parquet":
            data = _with_native_lists(data, self.table)
        if self._writer is None:
            if self.fmt == "csv":
                self._writer = pacsv.CSVWriter(
                    self.path, data.schema, write_options=pacsv.WriteOptions(quoting_style="needed")
                )
            else:
                self._writer = pq.ParquetWriter(self.path, data.schema, compression="zstd")
        self._writer.write_table(data)
        self.rows += data.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _write_tables(tables: Iterator[pa.Table], path: Path, fmt: Fmt, table: str) -> Path:
    writer = _Writer(path, fmt, table)
    try:
        for data in tables:
            writer.write(data)
    finally:
        writer.close()
    return path


def _as_text_table(data: pa.Table) -> pa.Table:
    columns = [
        column if pa.types.is_string(column.type) else column.cast(pa.string())
        for column in data.columns
    ]
    return pa.table(columns, names=data.column_names)


def _with_native_lists(data: pa.Table, table: str) -> pa.Table:
    """List columns as Parquet lists of strings (as a bank's Parquet export would hold them)."""
    for name in contract.LIST_COLUMNS[table]:
        if name not in data.column_names:
            continue
        cells = data.column(name).combine_chunks()
        lists = pc.split_pattern(cells, contract.LIST_SEPARATOR)
        empty = pa.scalar([], type=lists.type)
        lists = pc.if_else(pc.equal(cells, "").fill_null(False), empty, lists)
        data = data.set_column(data.column_names.index(name), name, lists)
    return data


def _empty(table: str) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in contract.COLUMNS[table]})


# --- generating one chunk -------------------------------------------------------------------------


def _chunk(rng: np.random.Generator, start: int, stop: int, total: int) -> dict[str, pa.Table]:
    customers = np.arange(start, stop, dtype=np.int64)
    n = len(customers)
    customer_ids = _customer_ids(customers)
    created = rng.integers(_START, _NOW - 400 * _DAY, n)
    enrolled = _between(rng, created, _NOW - 200 * _DAY)
    ended = rng.random(n) < 0.06
    enrollment_end = _between(rng, enrolled + 2 * _DAY, _NOW)
    has_parent = rng.random(n) < 0.03
    parents = _other_customers(rng, customers, total)
    country = _choose(rng, _COUNTRIES, n)
    customer_table = pa.table(
        {
            "sourceCustomerId": customer_ids,
            "sourceParentCustomerId": pc.if_else(
                pa.array(has_parent & (total > 1)), _customer_ids(parents), None
            ),
            "organizationId": _choose(rng, _ORGANIZATIONS, n),
            "postalCode": _postal_codes(rng, country),
            "country": country,
            "customerCreationDate": _dates(rng, created),
            "enrollmentStartDate": _dates(rng, enrolled),
            "enrollmentEndDate": pc.if_else(pa.array(ended), _dates(rng, enrollment_end), None),
            "enrollmentOptInStatus": pc.if_else(pa.array(ended), "INACTIVE", "ACTIVE"),
            "alertOptInStatus": _choose(rng, _ALERTS, n),
            "targetingIndicator": pc.if_else(
                pa.array(rng.random(n) < 0.92), "TARGET", "DO_NOT_TARGET"
            ),
        }
    )

    # accounts: a count per customer, the customer as primary, sometimes a second holder
    per_customer = rng.choice(len(_ACCOUNTS_PER_CUSTOMER), n, p=_ACCOUNTS_PER_CUSTOMER)
    owner = np.repeat(np.arange(n), per_customer)
    ordinal = _ordinal_within(per_customer)
    m = len(owner)
    primary = customers[owner]
    joint = (rng.random(m) < 0.10) & (total > 1)
    second = _other_customers(rng, primary, total)
    account_ids = _concat("ACC-", _pad(primary + 1, 10), "-", _pad(ordinal + 1, 2))
    primary_ids = customer_ids.take(pa.array(owner))
    swap = rng.random(m) < 0.5
    first_holder = pc.if_else(pa.array(swap & joint), _customer_ids(second), primary_ids)
    second_holder = pc.if_else(pa.array(swap & joint), primary_ids, _customer_ids(second))
    explicit = rng.random(m) < 0.5
    holders = pc.if_else(
        pa.array(joint),
        _concat(first_holder, "|", second_holder),
        pc.if_else(pa.array(explicit), primary_ids, ""),
    )
    opened = _between(rng, created[owner] + _DAY, _NOW - 60 * _DAY)
    status = _choose(rng, _ACCOUNT_STATUSES, m)
    closed = np.asarray(pc.equal(status, "CLOSED"), dtype=bool)
    closing = _between(rng, opened + 30 * _DAY, _NOW)
    account_type = _choose(rng, _ACCOUNT_TYPES, m)
    account_table = pa.table(
        {
            "sourceAccountId": account_ids,
            "sourceCustomerIds": holders,
            "primarySourceCustomerId": primary_ids,
            "status": status,
            "type": account_type,
            "sourcePortfolioId": _choose(rng, tuple((p, 1.0) for p in _PORTFOLIOS), m),
            "accountOpenDate": _dates(rng, opened),
            "accountCloseDate": pc.if_else(pa.array(closed), _dates(rng, closing), None),
        }
    )

    # cards: a count per account; holders alternate on joint accounts
    per_account = rng.choice(len(_CARDS_PER_ACCOUNT), m, p=_CARDS_PER_ACCOUNT)
    account = np.repeat(np.arange(m), per_account)
    k = len(account)
    within = _ordinal_within(per_account)
    by_second = joint[account] & (within % 2 == 1)
    holder_ids = pc.if_else(
        pa.array(by_second), _customer_ids(second[account]), primary_ids.take(pa.array(account))
    )
    network = rng.choice(np.array([v for v, _ in _NETWORKS]), k, p=_weights(_NETWORKS)).astype(
        np.int64
    )
    long_iin = rng.random(k) < 0.2
    iin = pc.if_else(
        pa.array(long_iin),
        _concat(_digits(network), _pad(rng.integers(0, 10_000_000, k), 7)),
        _concat(_digits(network), _pad(rng.integers(0, 100_000, k), 5)),
    )
    # last4 distinct within an account (and so within account + holder)
    last4 = _pad((rng.integers(0, 10_000, m)[account] + within * 1237) % 10_000, 4)
    kind = account_type.take(pa.array(account))
    credit = pc.is_in(kind, value_set=pa.array(["CRD", "SBCRD"]))
    card_type = pc.if_else(credit, "CREDIT", pc.if_else(pc.equal(kind, "PPD"), "PREPAID", "DEBIT"))
    # a card opens after its account and, on a closed account, closes before it
    account_end = np.where(closed[account], closing[account], _NOW)
    card_opened = _between(rng, opened[account] + _DAY, account_end - 10 * _DAY)
    card_closed = closed[account] | (rng.random(k) < 0.08)
    card_closing = _between(rng, card_opened + 3 * _DAY, account_end)
    card_table = pa.table(
        {
            "sourceAccountId": account_ids.take(pa.array(account)),
            "sourceCustomerId": holder_ids,
            "last4": last4,
            "iin": iin,
            "cardType": card_type,
            "status": pc.if_else(pa.array(card_closed), "CLOSED", "OPEN"),
            "networkIdentifier": _digits(network),
            "openDate": _dates(rng, card_opened),
            "closeDate": pc.if_else(pa.array(card_closed), _dates(rng, card_closing), None),
        }
    )
    return {"customers": customer_table, "accounts": account_table, "cards": card_table}


def _between(rng: np.random.Generator, low: np.ndarray | int, high: np.ndarray | int) -> np.ndarray:
    """A uniform instant in [low, high) for each pair (``low`` itself where high <= low)."""
    low = np.asarray(low, dtype=np.int64)
    span = np.maximum(np.asarray(high, dtype=np.int64) - low, 0)
    size = max(low.size, span.size)
    instants: np.ndarray = (low + (rng.random(size) * span).astype(np.int64)).astype(np.int64)
    return instants


def _weights(pairs: tuple[tuple[object, float], ...]) -> np.ndarray:
    weights = np.array([w for _, w in pairs], dtype=float)
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def _choose(rng: np.random.Generator, pairs: tuple[tuple[str, float], ...], n: int) -> pa.Array:
    values = pa.array([v for v, _ in pairs], pa.string())
    return values.take(pa.array(rng.choice(len(pairs), n, p=_weights(pairs))))


def _pad(numbers: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")


def _digits(numbers: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(numbers, pa.int64()), pa.string())


def _concat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _customer_ids(numbers: np.ndarray) -> pa.Array:
    return _concat("C", _pad(numbers + 1, 10))


def _other_customers(rng: np.random.Generator, numbers: np.ndarray, total: int) -> np.ndarray:
    """A random customer of the whole extract for each one given, never the same one."""
    if total < 2:
        return numbers.copy()
    shift = rng.integers(1, total, len(numbers))
    return (numbers + shift) % total


def _ordinal_within(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each group of the repeated layout ``np.repeat(range, counts)``."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    ordinals: np.ndarray = np.arange(total, dtype=np.int64) - starts
    return ordinals


def _postal_codes(rng: np.random.Generator, country: pa.Array) -> pa.Array:
    n = len(country)
    # US ZIP codes 00501-99950: the north-east's start with 0
    codes = _pad(rng.integers(501, 99_951, n), 5)
    for name, pool in _POSTAL_POOLS.items():
        choice = pa.array(pool, pa.string()).take(pa.array(rng.integers(0, len(pool), n)))
        codes = pc.if_else(pc.equal(country, name), choice, codes)
    return codes


def _dates(rng: np.random.Generator, seconds: np.ndarray) -> pa.Array:
    """Instants written the many ISO-8601 ways exports use (all denote the same instant,
    except bare dates, which denote midnight UTC of the day)."""
    n = len(seconds)
    seconds = np.asarray(seconds, dtype=np.int64)
    form = rng.choice(5, n, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    offset = rng.integers(0, len(_OFFSETS), n)
    offset[(form == 0) | (form == 1) | (form == 3)] = len(_OFFSETS) - 1  # +00:00
    local = seconds + _OFFSET_MINUTES[offset] * 60
    text = pc.cast(pa.array(local.astype("datetime64[s]")), pa.string())  # YYYY-MM-DD HH:MM:SS
    with_t = pc.utf8_replace_slice(text, 10, 11, "T")
    offsets = pa.array(_OFFSETS, pa.string()).take(pa.array(offset))
    millis = _pad(rng.integers(0, 1000, n), 3)
    variants = [
        pc.utf8_slice_codeunits(text, 0, 10),
        _concat(with_t, "Z"),
        _concat(with_t, offsets),
        text,
        _concat(with_t, ".", millis, offsets),
    ]
    return pc.choose(pa.array(form.astype(np.int8)), *variants)
