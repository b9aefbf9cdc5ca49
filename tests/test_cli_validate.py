"""``customer-sync validate`` in-process (exit codes, summary, report, rejects file) and once
as a real subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from customer_sync.adapters.rejects import write_rejects
from customer_sync.cli.app import main
from customer_sync.transforms.validate import REJECT_COLUMNS
from tests.conftest import REPO, SAMPLE_DATA
from tests.extract_factory import raw_rows, write_files


def _broken_extract(folder: Path) -> Path:
    """The factory extract with one of its five customers held back (20%)."""
    rows = raw_rows()
    rows["cards"][3]["last4"] = "99"  # C005's closed card
    write_files(rows, folder, "csv")
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sample_extract_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "out" / "report.json"
    status = main(["validate", str(SAMPLE_DATA), "--report", str(report)])
    assert status == 0
    data = json.loads(report.read_text())
    assert data["customers_read"] == data["customers_valid"] == 36
    assert data["customers_held_back"] == 0
    assert data["rows_read"] == {"customers": 36, "accounts": 49, "cards": 60}
    assert data["held_back_by_reason"] == {}
    assert data["guard_tripped"] is False
    rejects = Path(data["rejects"])
    assert rejects == tmp_path / "out" / "report.rejects.csv"
    assert list(pd.read_csv(rejects).columns) == list(REJECT_COLUMNS)
    assert _mode(rejects) == 0o600
    out = capsys.readouterr().out
    assert "customers:        36 read, 36 valid, 0 held back (0.0%)" in out
    assert f"rejects:          0 row(s) -> {rejects}" in out


def test_held_back_customers_exit_1_with_report_and_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _broken_extract(tmp_path / "extract")
    report, rejects = tmp_path / "report.json", tmp_path / "bad" / "rejects.csv"
    status = main(
        [
            "validate",
            str(source),
            "--max-held-back",
            "0.5",
            "--report",
            str(report),
            "--rejects",
            str(rejects),
        ]
    )
    assert status == 1
    data = json.loads(report.read_text())
    assert (data["customers_read"], data["customers_valid"], data["customers_held_back"]) == (
        5,
        4,
        1,
    )
    assert data["held_back_by_reason"] == {"cards.last4:last4_digits": 1}
    assert data["rejects"] == str(rejects)
    assert data["exit_status"] == 1
    table = pd.read_csv(rejects, dtype=str, keep_default_na=False)
    assert table[
        ["table", "row", "id", "column", "rule", "held_back_customers"]
    ].values.tolist() == [["cards", "4", "A400/C005", "last4", "last4_digits", "C005"]]
    assert "99" not in rejects.read_text().replace("C005", "")
    assert _mode(rejects) == 0o600
    out = capsys.readouterr().out
    assert "cards.last4:last4_digits  1" in out
    assert "customers:        5 read, 4 valid, 1 held back (20.0%)" in out


def test_the_guard_trips_with_exit_2_and_still_writes_report_and_rejects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _broken_extract(tmp_path / "extract")
    report = tmp_path / "report.json"
    assert main(["validate", str(source), "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("customer-sync: 1 of 5 customers (20.0%) would be held back")
    assert "Traceback" not in err
    data = json.loads(report.read_text())
    assert data["guard_tripped"] is True
    assert data["exit_status"] == 2
    assert Path(data["rejects"]).exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("drop-column", "cards.csv: missing required column(s): iin"),
        ("semicolons", "accounts.csv: looks semicolon-delimited"),
        ("latin-1", "customers.csv: is not UTF-8: undecodable bytes at line 3"),
        ("empty", "cards.csv: file is empty"),
    ],
)
def test_unusable_input_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, message: str
) -> None:
    drop = {"cards": ["iin"]} if damage == "drop-column" else {}
    write_files(raw_rows(), tmp_path, "csv", drop_columns=drop)
    if damage == "semicolons":
        path = tmp_path / "accounts.csv"
        path.write_text(path.read_text().replace(",", ";"))
    if damage == "latin-1":
        path = tmp_path / "customers.csv"
        path.write_bytes(path.read_bytes().replace(b"SW1A 1AA", b"S\xe91A 1AA"))
    if damage == "empty":
        (tmp_path / "cards.csv").write_bytes(b"")
    assert main(["validate", str(tmp_path), "--rejects", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "SW1A" not in err


def test_explicit_paths_rename_and_default_rejects_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = raw_rows()
    for row in rows["customers"]:
        row["CUST_NO"] = row.pop("sourceCustomerId")
    write_files(rows, tmp_path / "x", "parquet", drop_columns={"customers": ["sourceCustomerId"]})
    monkeypatch.chdir(tmp_path)
    status = main(
        [
            "validate",
            "--customers",
            "x/customers.parquet",
            "--accounts",
            "x/accounts.parquet",
            "--cards",
            "x/cards.parquet",
            "--rename",
            '{"customers": {"CUST_NO": "sourceCustomerId"}}',
        ]
    )
    assert status == 0
    assert (tmp_path / "rejects.csv").exists()


def test_a_bad_rename_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_files(raw_rows(), tmp_path, "csv")
    assert main(["validate", str(tmp_path), "--rename", "{not json", "--rejects", "r.csv"]) == 2
    assert "--rename: not valid JSON" in capsys.readouterr().err


def test_write_rejects_replaces_a_readable_file_with_an_owner_only_one(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    path.write_text("old")
    os.chmod(path, 0o644)
    frame = pd.DataFrame({c: ["x"] for c in REJECT_COLUMNS})
    assert write_rejects(frame, path) == path
    assert _mode(path) == 0o600
    assert pd.read_csv(path).shape == (1, len(REJECT_COLUMNS))
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.csv"]  # no temporary left


@pytest.mark.slow
def test_the_installed_command_validates_the_sample(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        ["uv", "run", "--locked", "customer-sync", "validate", "data", "--report", str(report)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path.home()}/.local/bin:{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["customers_valid"] == 36
    assert "rows read:        customers 36, accounts 49, cards 60" in done.stdout
