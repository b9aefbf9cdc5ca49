"""The synthetic extract generator: realistic shape, always valid, deterministic, written
as CSV and Parquet that read back to the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import customer_sync.devtools.synthetic as synthetic
from customer_sync.adapters.readers import read_extract
from customer_sync.cli.app import main
from customer_sync.devtools.synthetic import (
    synthetic_extract,
    write_extract,
    write_synthetic_extract,
)
from customer_sync.schemas import contract
from customer_sync.schemas.records import Extract
from customer_sync.transforms.normalise import normalise_table
from customer_sync.transforms.validate import validate_extract


def _as_extract(frames: dict[str, pd.DataFrame]) -> Extract:
    """What the readers would make of these frames (empty cells missing, ``_row``)."""
    tables = {}
    for table, frame in frames.items():
        frame = frame.replace("", np.nan)
        for name in contract.COLUMNS[table]:  # optional columns the generator leaves out
            if name not in frame.columns:
                frame = frame.assign(**{name: pd.Series(np.nan, index=frame.index, dtype="str")})
        frame = frame[
            [*contract.COLUMNS[table], *(c for c in frame if c not in contract.COLUMNS[table])]
        ]
        tables[table] = frame.assign(_row=range(1, len(frame) + 1)).astype({"_row": "int64"})
    return Extract(**tables, files={t: t for t in contract.TABLES})


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return synthetic_extract(4_000, seed=7)


def test_the_shape_is_realistic(frames: dict[str, pd.DataFrame]) -> None:
    customers, accounts, cards = frames["customers"], frames["accounts"], frames["cards"]
    n = len(customers)
    assert n == 4_000
    assert 1.4 < len(accounts) / n < 1.7
    assert 1.8 < len(cards) / n < 2.4
    joint = accounts["sourceCustomerIds"].str.contains("|", regex=False)
    assert 0.07 < joint.mean() < 0.13
    assert (~customers["sourceCustomerId"].isin(accounts["primarySourceCustomerId"])).mean() > 0.03
    assert (~accounts["sourceAccountId"].isin(cards["sourceAccountId"])).mean() > 0.1
    closed = accounts["status"] == "CLOSED"
    assert closed.any()
    assert accounts.loc[closed, "accountCloseDate"].notna().all()
    assert accounts.loc[~closed, "accountCloseDate"].isna().all()
    assert (cards["status"] == "CLOSED").any()
    assert customers["sourceParentCustomerId"].notna().any()
    assert (accounts["sourceCustomerIds"] == "").any()  # the primary alone, left empty


def test_text_looks_like_a_banks_export(frames: dict[str, pd.DataFrame]) -> None:
    customers, cards = frames["customers"], frames["cards"]
    assert customers["postalCode"].str.match(r"^0\d{4}$").any()
    assert customers["organizationId"].str.startswith("0").any()
    assert cards["last4"].str.startswith("0").any()
    dates = customers["customerCreationDate"]
    assert dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}").any()  # bare date
    assert dates.str.endswith("Z").any()
    assert dates.str.contains(r"[+-]\d{2}:\d{2}$").any()  # offset
    assert dates.str.contains(r"\d \d").any()  # a space instead of T
    assert dates.str.contains(r"\.\d{3}").any()  # fractions
    assert set(cards["iin"].str.len()) == {6, 8}
    assert (cards["iin"].str[0] == cards["networkIdentifier"]).all()


def test_every_generated_row_is_valid(frames: dict[str, pd.DataFrame]) -> None:
    v = validate_extract(_as_extract(frames))
    assert v.rejects.empty, v.rejects.head().to_string()
    assert v.rows_valid == {t: len(frames[t]) for t in contract.TABLES}


def test_the_same_seed_gives_the_same_extract() -> None:
    first, again, other = (synthetic_extract(300, seed=s) for s in (1, 1, 2))
    for table in contract.TABLES:
        pd.testing.assert_frame_equal(first[table], again[table])
    assert not first["customers"].equals(other["customers"])


def test_chunks_do_not_change_the_extract_and_ids_stay_unique(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synthetic, "CHUNK_CUSTOMERS", 700)
    frames = synthetic_extract(2_000, seed=3)
    assert frames["customers"]["sourceCustomerId"].is_unique
    assert frames["accounts"]["sourceAccountId"].is_unique
    assert validate_extract(_as_extract(frames)).rejects.empty  # links cross chunk borders
    written = write_synthetic_extract(tmp_path, 2_000, "csv", seed=3)
    assert {t: f.rows for t, f in written.items()} == {t: len(frames[t]) for t in contract.TABLES}
    back = read_extract(tmp_path)
    expected = _as_extract(frames)
    for table in contract.TABLES:
        pd.testing.assert_frame_equal(back.table(table), expected.table(table))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_files_read_back_to_the_same_normalised_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    monkeypatch.setattr(synthetic, "WRITE_ROWS", 97)  # several pieces per table
    frames = synthetic_extract(500, seed=4)
    paths = write_extract(frames, tmp_path, fmt)  # type: ignore[arg-type]
    assert paths == {t: tmp_path / f"{t}.{fmt}" for t in contract.TABLES}
    back = read_extract(tmp_path)
    expected = _as_extract(frames)
    for table in contract.TABLES:
        got = normalise_table(back.table(table), table).frame
        want = normalise_table(expected.table(table), table).frame
        pd.testing.assert_frame_equal(got, want)


def test_zero_customers_writes_header_only_files(tmp_path: Path) -> None:
    written = write_synthetic_extract(tmp_path, 0, "csv")
    assert {f.rows for f in written.values()} == {0}
    assert read_extract(tmp_path).rows_read == {"customers": 0, "accounts": 0, "cards": 0}


def test_the_generate_command_writes_an_extract_that_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "extract"
    assert (
        main(["generate", str(out), "--customers", "250", "--format", "parquet", "--seed", "9"])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "accounts.parquet",
        "cards.parquet",
        "customers.parquet",
    ]
    assert "generated 250 customers (seed 9)" in capsys.readouterr().out
    assert main(["validate", str(out), "--rejects", str(tmp_path / "r.csv")]) == 0
