"""Masking by shape (``customer_sync.transforms.card_shape``) and formula neutralising
(``customer_sync.adapters.csv_safety``), and both rejects writers holding to the latter."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from customer_sync.adapters.csv_safety import neutralised, neutralised_frame
from customer_sync.adapters.rejects import RejectsWriter, write_rejects
from customer_sync.schemas import contract
from customer_sync.transforms.card_shape import looks_like_card_data
from customer_sync.transforms.validate import REJECT_COLUMNS, validate_extract
from tests.extract_factory import extract_of, raw_rows

PLANTED_FORMULAS = ('=HYPERLINK("http://x")', "+1", "-1", "@SUM(A1)", "\t=1", "\r=1")


@pytest.mark.parametrize(
    "value",
    [
        "0042",
        "412345",
        "51234567",
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "02134",
        "12345-6789",
        "card 4111 1111 1111 1111",
        "00412",
    ],
)
def test_card_shaped_values_are_recognised(value: str) -> None:
    assert looks_like_card_data(value)


@pytest.mark.parametrize(
    "value", ["C001", "123", "2019-02-29", "03/04/2019", "SW1A 1AA", "CREDIT", "PF-001", ""]
)
def test_other_values_are_not(value: str) -> None:
    assert not looks_like_card_data(value)


@pytest.mark.parametrize("formula", PLANTED_FORMULAS)
def test_a_formula_gets_a_leading_quote(formula: str) -> None:
    assert neutralised(formula) == "'" + formula
    assert neutralised("C001") == "C001"


def test_neutralised_frame_leaves_numbers_and_the_input_alone() -> None:
    frame = pd.DataFrame({"id": ["=1", "C1"], "row": [-1, 2]})
    out = neutralised_frame(frame)
    assert out["id"].tolist() == ["'=1", "C1"]
    assert out["row"].tolist() == [-1, 2]
    assert frame["id"].tolist() == ["=1", "C1"]


def _planted_rejects() -> pd.DataFrame:
    rows = [{name: formula for name in REJECT_COLUMNS} | {"row": 1} for formula in PLANTED_FORMULAS]
    return pd.DataFrame(rows, columns=list(REJECT_COLUMNS))


def _cells(path: Path) -> list[str]:
    """Every text cell of the file, read back with the ``csv`` module (exact bytes)."""
    with path.open(encoding="utf-8", newline="") as stream:
        header, *records = list(csv.reader(stream))
    return [
        cell
        for record in records
        for name, cell in zip(header, record, strict=True)
        if name != "row"
    ]


def test_write_rejects_neutralises_every_planted_formula(tmp_path: Path) -> None:
    path = write_rejects(_planted_rejects(), tmp_path / "rejects.csv")
    assert sorted(set(_cells(path))) == sorted("'" + f for f in PLANTED_FORMULAS)


def test_the_chunked_rejects_writer_neutralises_every_planted_formula(tmp_path: Path) -> None:
    with RejectsWriter(tmp_path / "rejects.csv") as writer:
        writer.write(_planted_rejects())
        writer.write(_planted_rejects())
    assert sorted(set(_cells(tmp_path / "rejects.csv"))) == sorted(
        "'" + f for f in PLANTED_FORMULAS
    )


@pytest.mark.parametrize("table", contract.TABLES)
def test_a_card_number_planted_in_any_column_is_never_in_a_reason(table: str) -> None:
    planted = "4111 1111 1111 1111"
    for column in contract.COLUMNS[table]:
        rows = raw_rows()
        rows[table][0][column] = planted
        rejects = validate_extract(extract_of(rows)).rejects
        assert not rejects["reason"].str.contains("4111").any(), (table, column)
