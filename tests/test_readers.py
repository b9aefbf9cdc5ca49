"""The readers over real files: text kept exactly, CSV and Parquet alike, blocks, fsspec URLs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from customer_sync.adapters.readers import (
    ignored_columns,
    iter_table_blocks,
    locate_tables,
    parse_rename,
    read_extract,
    read_table,
)
from customer_sync.schemas import contract
from customer_sync.schemas.errors import ConfigError, InputError
from tests.extract_factory import raw_rows, write_csv, write_files

FORMATS = ("csv", "parquet")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_column_is_read_as_text_exactly(tmp_path: Path, fmt: str) -> None:
    write_files(raw_rows(), tmp_path, fmt)  # type: ignore[arg-type]
    extract = read_extract(tmp_path)
    customers = extract.customers
    assert list(customers.columns) == [*contract.CUSTOMER_COLUMNS, contract.ROW_COLUMN]
    assert all(str(customers[c].dtype) == "str" for c in contract.CUSTOMER_COLUMNS)
    assert customers["organizationId"].tolist()[:2] == ["00123", "00123"]
    assert customers["postalCode"].tolist()[2] == "00501"
    assert customers["country"].tolist()[3] == "NA"  # Namibia is not a missing value
    assert customers["customerCreationDate"].iloc[0] == "2019-03-04T10:15:00-05:00"  # as written
    assert pd.isna(customers["sourceParentCustomerId"].iloc[0])  # empty cell = missing
    cards = extract.cards
    assert cards["last4"].tolist()[0] == "0042"
    assert cards["networkIdentifier"].tolist()[0] == "4"  # text until normalised
    assert extract.rows_read == {"customers": 5, "accounts": 5, "cards": 6}
    assert customers[contract.ROW_COLUMN].tolist() == [1, 2, 3, 4, 5]
    assert extract.files["cards"] == f"{tmp_path}/cards.{fmt}"
    assert extract.ignored_columns == {}


def test_csv_quoting_bom_crlf_and_whitespace_are_kept(tmp_path: Path) -> None:
    header = ",".join(c for c in contract.CUSTOMER_COLUMNS if c != "redemptionEligibility")
    body = (
        '"C,1",,"00""7""","line one\r\nline two",US,2020-01-01,2020-01-01,,ACTIVE,,TARGET\r\n'
        "  C2  ,,007,02134,US,2020-01-01,2020-01-01,,ACTIVE,NEW|ALL,TARGET\r\n"
    )
    path = tmp_path / "customers.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + "\r\n" + body).encode())
    frame = read_table(path, "customers")
    assert frame["sourceCustomerId"].tolist() == ["C,1", "  C2  "]  # stripped only by normalise
    assert frame["organizationId"].tolist() == ['00"7"', "007"]
    assert frame["postalCode"].tolist() == ["line one\r\nline two", "02134"]
    assert frame["alertOptInStatus"].tolist()[1] == "NEW|ALL"
    assert frame[contract.ROW_COLUMN].tolist() == [1, 2]  # a quoted newline is one data row


def test_optional_columns_may_be_left_out_and_extra_ones_are_reported(tmp_path: Path) -> None:
    rows = raw_rows()
    for row in rows["cards"]:
        row["nickname"] = "x"
    write_files(
        rows,
        tmp_path,
        "csv",
        drop_columns={
            "customers": contract.OPTIONAL_COLUMNS["customers"],
            "accounts": ["sourceCustomerIds"],
        },
    )
    extract = read_extract(tmp_path)
    assert extract.customers["sourceParentCustomerId"].isna().all()
    assert extract.customers["enrollmentEndDate"].isna().all()
    assert extract.accounts["sourceCustomerIds"].isna().all()
    assert extract.ignored_columns == {"cards": ("nickname",)}
    assert "nickname" not in extract.cards.columns
    assert ignored_columns(tmp_path / "cards.csv", "cards") == ("nickname",)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rename_maps_a_banks_names_flat_or_per_table(tmp_path: Path, fmt: str) -> None:
    rows = raw_rows()
    for row in rows["customers"]:
        row["cust_id"] = row.pop("sourceCustomerId")
    for row in rows["accounts"]:
        row["acct"] = row.pop("sourceAccountId")
    for row in rows["cards"]:
        row["acct"] = row.pop("sourceAccountId")
    dropped = {
        "customers": ["sourceCustomerId"],
        "accounts": ["sourceAccountId"],
        "cards": ["sourceAccountId"],
    }
    write_files(rows, tmp_path, fmt, drop_columns=dropped)  # type: ignore[arg-type]
    flat = read_extract(tmp_path, rename={"cust_id": "sourceCustomerId", "acct": "sourceAccountId"})
    assert flat.customers["sourceCustomerId"].tolist()[0] == "C001"
    assert flat.cards["sourceAccountId"].tolist()[0] == "A100"
    per_table = read_extract(
        tmp_path,
        rename={
            "customers": {"cust_id": "sourceCustomerId"},
            "accounts": {"acct": "sourceAccountId"},
            "cards": {"acct": "sourceAccountId"},
        },
    )
    pd.testing.assert_frame_equal(per_table.accounts, flat.accounts)


def test_parse_rename_reads_inline_json_or_a_file(tmp_path: Path) -> None:
    assert parse_rename('{"a": "sourceCustomerId"}') == {"a": "sourceCustomerId"}
    path = tmp_path / "rename.json"
    path.write_text(json.dumps({"cards": {"acct": "sourceAccountId"}}))
    assert parse_rename(str(path)) == {"cards": {"acct": "sourceAccountId"}}
    assert parse_rename(None) is None
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_rename("{oops")
    with pytest.raises(ConfigError, match="expected"):
        parse_rename('{"a": 1}')
    with pytest.raises(ConfigError, match="cannot read"):
        parse_rename(str(tmp_path / "missing.json"))


def test_parquet_lists_and_typed_columns_become_text(tmp_path: Path) -> None:
    customers = pa.table(
        {
            "sourceCustomerId": ["C1", "C2", "C3"],
            # a number here is refused (leading zeros): tests/test_bad_input_corpus.py
            "organizationId": pa.array(["123", "50004", None], pa.string()),
            "postalCode": pa.array(["02134", "02135", "02136"]).dictionary_encode(),
            "country": ["US", "US", "US"],
            "customerCreationDate": pa.array(
                np.array(["2020-01-02T03:04:05", "NaT", "2021-01-01"], dtype="datetime64[us]")
            ).cast(pa.timestamp("us", tz="UTC")),
            "enrollmentStartDate": pa.array(np.array(["2020-01-02"] * 3, dtype="datetime64[D]")),
            "enrollmentOptInStatus": ["ACTIVE"] * 3,
            "alertOptInStatus": pa.array([["NEW", "ALL"], [], None], pa.list_(pa.string())),
            "targetingIndicator": ["TARGET"] * 3,
        }
    )
    path = tmp_path / "customers.parquet"
    pq.write_table(customers, path)
    frame = read_table(path, "customers")
    assert frame["organizationId"].tolist()[:2] == ["123", "50004"]
    assert pd.isna(frame["organizationId"].iloc[2])
    assert frame["postalCode"].tolist() == ["02134", "02135", "02136"]
    assert frame["customerCreationDate"].iloc[0] == "2020-01-02T03:04:05.000000Z"
    assert frame["enrollmentStartDate"].iloc[0] == "2020-01-02"
    assert frame["alertOptInStatus"].iloc[0] == "NEW|ALL"
    assert frame["alertOptInStatus"].iloc[1] == ""
    assert pd.isna(frame["alertOptInStatus"].iloc[2])


def test_parquet_float_network_identifiers_with_gaps_read_as_integers(tmp_path: Path) -> None:
    rows = raw_rows()
    cards = pd.DataFrame(rows["cards"])
    cards["networkIdentifier"] = [4.0, 5.0, None, 6.0, 4.0, 4.0]
    path = tmp_path / "cards.parquet"
    pq.write_table(pa.Table.from_pandas(cards, preserve_index=False), path)
    frame = read_table(path, "cards")
    assert frame["networkIdentifier"].tolist()[:2] == ["4", "5"]
    assert pd.isna(frame["networkIdentifier"].iloc[2])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("block_rows", [1, 2, 4, 100])
def test_blocks_hold_the_same_rows_numbered_across_blocks(
    tmp_path: Path, fmt: str, block_rows: int
) -> None:
    write_files(raw_rows(), tmp_path, fmt)  # type: ignore[arg-type]
    path = tmp_path / f"cards.{fmt}"
    blocks = list(iter_table_blocks(path, "cards", block_rows))
    assert [len(b) for b in blocks][:-1] == [block_rows] * (len(blocks) - 1)
    whole = pd.concat(blocks, ignore_index=True)
    pd.testing.assert_frame_equal(whole, read_table(path, "cards"))
    assert whole[contract.ROW_COLUMN].tolist() == [1, 2, 3, 4, 5, 6]


def test_blocks_of_a_large_csv_keep_rows_in_order(tmp_path: Path) -> None:
    header = list(contract.CARD_COLUMNS)
    n = 30_000
    records = (
        [f"A{i:06d}", "C1", f"{i % 10_000:04d}", "412345", "DEBIT", "OPEN", "4", "2020-01-01", None]
        for i in range(n)
    )
    path = write_csv(tmp_path / "cards.csv", header, records)
    blocks = list(iter_table_blocks(path, "cards", 7_000))
    assert [len(b) for b in blocks] == [7_000, 7_000, 7_000, 7_000, 2_000]
    last = blocks[-1]
    assert last[contract.ROW_COLUMN].tolist()[-1] == n
    assert last["sourceAccountId"].tolist()[-1] == f"A{n - 1:06d}"
    assert last["last4"].tolist()[-1] == f"{(n - 1) % 10_000:04d}"


def test_a_header_only_file_reads_as_zero_rows_and_yields_no_blocks(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cards.csv", list(contract.CARD_COLUMNS), [])
    frame = read_table(path, "cards")
    assert len(frame) == 0
    assert list(frame.columns) == [*contract.CARD_COLUMNS, "_row"]
    assert list(iter_table_blocks(path, "cards", 10)) == []


def test_explicit_paths_win_over_the_folder(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path / "main", "csv")
    other = raw_rows()
    other["cards"] = other["cards"][:2]
    write_files(other, tmp_path / "other", "parquet", tables=["cards"])
    files = locate_tables(tmp_path / "main", cards=tmp_path / "other" / "cards.parquet")
    assert files["cards"].endswith("other/cards.parquet")
    assert files["customers"].endswith("main/customers.csv")
    extract = read_extract(tmp_path / "main", cards=tmp_path / "other" / "cards.parquet")
    assert extract.rows_read["cards"] == 2
    only_paths = read_extract(
        customers=tmp_path / "main" / "customers.csv",
        accounts=tmp_path / "main" / "accounts.csv",
        cards=tmp_path / "main" / "cards.csv",
    )
    assert only_paths.rows_read == {"customers": 5, "accounts": 5, "cards": 6}


def test_gzipped_csv_is_read(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    for table in contract.TABLES:
        plain = tmp_path / f"{table}.csv"
        (tmp_path / f"{table}.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    extract = read_extract(tmp_path)
    assert extract.rows_read == {"customers": 5, "accounts": 5, "cards": 6}
    assert extract.cards["last4"].iloc[0] == "0042"


@pytest.mark.parametrize("fmt", FORMATS)
def test_fsspec_urls_are_read(tmp_path: Path, fmt: str) -> None:
    local = tmp_path / "local"
    write_files(raw_rows(), local, fmt)  # type: ignore[arg-type]
    memory = fsspec.filesystem("memory")
    for table in contract.TABLES:
        memory.pipe(f"/extract-{fmt}/{table}.{fmt}", (local / f"{table}.{fmt}").read_bytes())
    try:
        extract = read_extract(f"memory://extract-{fmt}")
        assert extract.rows_read == {"customers": 5, "accounts": 5, "cards": 6}
        assert extract.customers["postalCode"].iloc[2] == "00501"
        assert extract.files["customers"] == f"memory://extract-{fmt}/customers.{fmt}"
        blocks = list(iter_table_blocks(f"memory://extract-{fmt}/cards.{fmt}", "cards", 4))
        assert [len(b) for b in blocks] == [4, 2]
    finally:
        memory.rm(f"/extract-{fmt}", recursive=True)


def test_a_missing_fsspec_folder_is_an_input_error() -> None:
    with pytest.raises(InputError, match="folder not found"):
        read_extract("memory://no-such-extract")
