"""Bad input over the real readers, on CSV and Parquet files: clear messages, exact counts.

Unusable files raise InputError (one message naming the file and the problem, never a cell
value); usable files with bad rows are validated and every row is accounted for.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from customer_sync.adapters.readers import iter_table_blocks, read_extract, read_table
from customer_sync.schemas import contract
from customer_sync.schemas.errors import InputError
from customer_sync.transforms.validate import Validation, validate_extract
from tests.extract_factory import Rows, raw_rows, write_csv, write_files

FORMATS = ("csv", "parquet")


def _validated(rows: Rows, folder: Path, fmt: str) -> Validation:
    write_files(rows, folder, fmt)  # type: ignore[arg-type]
    return validate_extract(read_extract(folder))


def _input_error(folder: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        read_extract(folder)
    return caught.value


# --- unusable files ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_required_column_is_named(tmp_path: Path, fmt: str) -> None:
    write_files(raw_rows(), tmp_path, fmt, drop_columns={"cards": ["iin", "openDate"]})  # type: ignore[arg-type]
    error = _input_error(tmp_path)
    assert error.file == str(tmp_path / f"cards.{fmt}")
    assert "missing required column(s): iin, openDate" in error.problem


def test_a_column_in_the_wrong_case_gets_a_hint(tmp_path: Path) -> None:
    rows = raw_rows()
    for row in rows["customers"]:
        row["sourcecustomerid"] = row.pop("sourceCustomerId")
    write_files(rows, tmp_path, "csv", drop_columns={"customers": ["sourceCustomerId"]})
    error = _input_error(tmp_path)
    assert "missing required column(s): sourceCustomerId" in error.problem
    assert "did you mean 'sourcecustomerid' -> sourceCustomerId" in error.problem


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_the_wrong_delimiter_is_named(tmp_path: Path, delimiter: str, name: str) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "accounts.csv"
    path.write_text(path.read_text().replace(",", delimiter))
    error = _input_error(tmp_path)
    assert error.file == str(path)
    assert f"looks {name}-delimited" in error.problem
    assert "comma-separated" in error.problem


def test_non_utf8_bytes_are_reported_with_their_line_and_no_value(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "cards.csv"
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"A400", b"A\xe9400")  # Latin-1 e-acute on data row 4
    path.write_bytes(b"\n".join(lines))
    error = _input_error(tmp_path)
    assert (
        error.problem == "is not UTF-8: undecodable bytes at line 5 (re-export the file as UTF-8)"
    )


def test_non_utf8_bytes_in_the_header_are_reported(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "customers.csv"
    path.write_bytes(b"\xff" + path.read_bytes())
    assert "line 1" in _input_error(tmp_path).problem


def test_utf16_is_named(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "customers.csv"
    path.write_bytes(path.read_text().encode("utf-16"))
    assert "is UTF-16, not UTF-8" in _input_error(tmp_path).problem


def test_parquet_bytes_that_are_not_utf8_are_reported(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "parquet")
    table = pq.read_table(tmp_path / "customers.parquet")
    bad = pa.array([b"C\xff01"] + [b"C00%d" % n for n in range(2, 6)], pa.binary())
    table = table.set_column(0, "sourceCustomerId", bad)
    pq.write_table(table, tmp_path / "customers.parquet")
    error = _input_error(tmp_path)
    assert error.problem == "column sourceCustomerId holds bytes that are not UTF-8"


@pytest.mark.parametrize(
    ("fmt", "content"),
    [("csv", b""), ("csv", b"\xef\xbb\xbf"), ("csv", b"\n\n  \n"), ("parquet", b"")],
)
def test_an_empty_file_is_reported(tmp_path: Path, fmt: str, content: bytes) -> None:
    write_files(raw_rows(), tmp_path, fmt)  # type: ignore[arg-type]
    (tmp_path / f"accounts.{fmt}").write_bytes(content)
    error = _input_error(tmp_path)
    assert error.file == str(tmp_path / f"accounts.{fmt}")
    assert error.problem.startswith("file is empty")


def test_an_unreadable_parquet_file_is_reported(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "parquet")
    (tmp_path / "cards.parquet").write_bytes(b"PAR1 this is not parquet at all")
    assert "is not a readable Parquet file" in _input_error(tmp_path).problem


def test_a_csv_row_with_the_wrong_number_of_fields_is_located_without_its_values(
    tmp_path: Path,
) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "cards.csv"
    lines = path.read_text().split("\n")
    lines[3] = lines[3] + ",extra,0042"  # data row 3
    path.write_text("\n".join(lines))
    error = _input_error(tmp_path)
    assert error.problem == (
        "1 row(s) do not have the header's 9 fields; the first is data row 3 (line 4) with "
        "11 field(s). Check quoting and the delimiter"
    )


def test_both_csv_and_parquet_of_one_table_is_an_error(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    write_files(raw_rows(), tmp_path, "parquet", tables=["cards"])
    error = _input_error(tmp_path)
    assert error.file == str(tmp_path)
    assert "more than one file for the cards table (cards.csv, cards.parquet)" in error.problem


def test_a_missing_table_or_file_is_named(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv", tables=["customers", "cards"])
    assert "no accounts.csv or accounts.parquet in this folder" in _input_error(tmp_path).problem
    with pytest.raises(InputError, match="file not found"):
        read_extract(tmp_path, accounts=tmp_path / "nope.csv")
    with pytest.raises(InputError, match="folder not found"):
        read_extract(tmp_path / "nowhere")
    with pytest.raises(InputError, match="unsupported file type"):
        read_extract(tmp_path, accounts=tmp_path / "accounts.xlsx")


# --- usable files with bad rows: exact counts ----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_only_tables_are_empty_not_errors(tmp_path: Path, fmt: str) -> None:
    empty: Rows = {"customers": [], "accounts": [], "cards": []}
    v = _validated(empty, tmp_path, fmt)
    assert v.rows_read == {"customers": 0, "accounts": 0, "cards": 0}
    assert (v.customers_read, v.customers_held_back) == (0, 0)
    assert v.rejects.empty


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_header_only_customers_table_makes_every_account_and_card_an_orphan(
    tmp_path: Path, fmt: str
) -> None:
    rows = raw_rows()
    rows["customers"] = []
    v = _validated(rows, tmp_path, fmt)
    assert v.customers_read == 0
    assert (v.orphan_accounts, v.orphan_cards) == (5, 6)
    assert v.rows_valid == {"customers": 0, "accounts": 0, "cards": 0}
    assert v.rows_rejected == {"customers": 0, "accounts": 5, "cards": 6}


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_ids(tmp_path: Path, fmt: str) -> None:
    rows = raw_rows()
    rows["customers"][3]["sourceCustomerId"] = "C001"  # C004's row claims C001
    rows["accounts"][2]["sourceAccountId"] = "A400"  # A300's row (C002) claims C005's A400
    rows["cards"][5]["sourceCustomerId"] = "C999"  # A500/C999/2222 ...
    rows["cards"][4]["last4"] = "2222"  # ... twice
    v = _validated(rows, tmp_path, fmt)
    rules = v.rejects.groupby(["table", "rule"]).size().to_dict()
    assert rules == {("customers", "unique"): 2, ("accounts", "unique"): 2, ("cards", "unique"): 2}
    assert v.rejects.loc[v.rejects["table"] == "customers", "row"].tolist() == [1, 4]
    assert v.rejects.loc[v.rejects["table"] == "accounts", "row"].tolist() == [3, 4]
    assert v.rejects.loc[v.rejects["table"] == "cards", "row"].tolist() == [5, 6]
    # both C001 rows; C002 (A300's row and A500's cards); C005 (the real A400)
    assert sorted(v.held_back["sourceCustomerId"]) == ["C001", "C001", "C002", "C005"]
    assert v.customers_held_back == 4
    assert v.customers_valid == 1
    assert "A200" in v.accounts["sourceAccountId"].tolist()  # kept whole for C003
    assert v.held_back_by_reason == {
        "accounts.sourceAccountId:unique": 2,
        "cards:unique": 1,
        "customers.sourceCustomerId:unique": 2,
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_orphan_cards_and_accounts(tmp_path: Path, fmt: str) -> None:
    rows = raw_rows()
    rows["accounts"].append(
        {
            **rows["accounts"][2],
            "sourceAccountId": "A900",
            "sourceCustomerIds": "C900",
            "primarySourceCustomerId": "C900",
        }
    )
    rows["cards"].append(
        {**rows["cards"][0], "sourceAccountId": "A900", "sourceCustomerId": "C900"}
    )
    rows["cards"].append(
        {**rows["cards"][0], "sourceAccountId": "A901", "sourceCustomerId": "C901"}
    )
    v = _validated(rows, tmp_path, fmt)
    assert (v.orphan_accounts, v.orphan_cards) == (1, 2)
    assert v.rows_rejected == {"customers": 0, "accounts": 1, "cards": 2}
    assert v.customers_held_back == 0
    assert v.customers_valid == 5
    assert v.rejects[["table", "row", "rule"]].values.tolist() == [
        ["accounts", 6, "orphan_account"],
        ["cards", 7, "orphan_card"],
        ["cards", 8, "orphan_card"],
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_dates(tmp_path: Path, fmt: str) -> None:
    rows = raw_rows()
    rows["customers"][0]["customerCreationDate"] = "03/04/2019"
    rows["customers"][1]["enrollmentStartDate"] = "2019-02-29"
    rows["accounts"][3]["accountCloseDate"] = "2019-01-01"  # before A400's open date
    rows["cards"][0]["openDate"] = "2019-03-06T25:00:00Z"
    v = _validated(rows, tmp_path, fmt)
    got = v.rejects[["table", "row", "column", "rule"]].values.tolist()
    assert got == [
        ["customers", 1, "customerCreationDate", "utc_datetime"],
        ["customers", 2, "enrollmentStartDate", "utc_datetime"],
        ["accounts", 4, "accountCloseDate", "close_not_before_open"],
        ["cards", 1, "openDate", "utc_datetime"],
    ]
    assert v.rejects["reason"].iloc[0] == (
        "customerCreationDate '03/04/2019' is not an ISO-8601 date or date-time"
    )
    assert sorted(v.held_back["sourceCustomerId"]) == ["C001", "C002", "C005"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_enum_values(tmp_path: Path, fmt: str) -> None:
    rows = raw_rows()
    rows["customers"][3]["enrollmentOptInStatus"] = "Active"
    rows["accounts"][2]["type"] = "CHK"
    rows["cards"][3]["cardType"] = "CHARGE"
    rows["cards"][4]["networkIdentifier"] = "9"
    v = _validated(rows, tmp_path, fmt)
    assert v.rejects[["table", "row", "column"]].values.tolist() == [
        ["customers", 4, "enrollmentOptInStatus"],
        ["accounts", 3, "type"],
        ["cards", 4, "cardType"],
        ["cards", 5, "networkIdentifier"],
    ]
    assert set(v.rejects["rule"]) == {"allowed_values"}
    assert v.rejects["reason"].iloc[3] == (
        "networkIdentifier '9' is not an allowed value (one of 3, 4, 5, 6)"
    )
    assert sorted(v.held_back["sourceCustomerId"]) == ["C002", "C004", "C005"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_leading_zeros_survive_reading_and_validation(tmp_path: Path, fmt: str) -> None:
    v = _validated(raw_rows(), tmp_path, fmt)
    assert v.customers["organizationId"].tolist() == ["00123", "00123", "00123", "00123", "0042"]
    assert v.customers["postalCode"].tolist()[:3] == ["02134", "SW1A 1AA", "00501"]
    assert v.cards["last4"].tolist()[0] == "0042"


def test_a_bom_and_crlf_csv_validates(tmp_path: Path) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    for table in contract.TABLES:
        path = tmp_path / f"{table}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    v = validate_extract(read_extract(tmp_path))
    assert v.rejects.empty
    assert v.customers_valid == 5


def test_blank_and_whitespace_cells_are_missing(tmp_path: Path) -> None:
    rows = raw_rows()
    rows["customers"][0]["country"] = "   "
    rows["cards"][1]["iin"] = " "
    v = _validated(rows, tmp_path, "csv")
    assert v.rejects[["column", "rule"]].values.tolist() == [
        ["country", "required"],
        ["iin", "required"],
    ]


def test_a_million_character_cell_is_rejected_without_being_quoted_whole(tmp_path: Path) -> None:
    header = list(contract.CUSTOMER_COLUMNS)
    row = [raw_rows()["customers"][0].get(c) for c in header]
    row[0] = "C" * 1_000_000
    write_files(raw_rows(), tmp_path, "csv")
    write_csv(tmp_path / "customers.csv", header, [row])
    v = validate_extract(read_extract(tmp_path))
    (reason,) = v.rejects.loc[v.rejects["table"] == "customers", "reason"]
    assert reason == "sourceCustomerId is too long (at most 120 characters)"


@pytest.mark.parametrize("damage", ["fields", "latin-1"])
def test_block_reading_reports_bad_rows_like_whole_reading(tmp_path: Path, damage: str) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    path = tmp_path / "cards.csv"
    lines = path.read_bytes().split(b"\n")
    if damage == "fields":
        lines[3] += b",extra"
    else:
        lines[4] = lines[4].replace(b"A400", b"A\xe9400")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError) as whole:
        read_table(path, "cards")
    with pytest.raises(InputError) as blocks:
        list(iter_table_blocks(path, "cards", 2))
    assert blocks.value.problem == whole.value.problem
    assert ("data row 3" if damage == "fields" else "line 5") in blocks.value.problem
