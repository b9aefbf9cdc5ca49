"""`customer-sync plan` over a real ledger (SQLite and PostgreSQL) after a real run.

Night 1 delivers 30 customers to the stand-in partner, one refused. Before night 2 the
extract has a card with a new number, a closed card, a closed account and a vanished
customer; the plan names each, per customer, and shows no postal code, last4 or iin (planted
values). Planning writes nothing to the ledger.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.ledger.factory import open_ledger
from customer_sync.run.planning import plan_extract, planning_ledger
from customer_sync.transforms.changes import SENSITIVE_CHANGE
from tests.flow_support import read_table, write_synthetic, write_table
from tests.test_absent import remove_customers
from tests.test_cli import _run
from tests.test_morning_after import (
    PLANTED_IIN,
    PLANTED_LAST4,
    PLANTED_POSTAL,
    _assert_no_card_data,
)

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def night(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp(f"plan-{request.param}")
    source = write_synthetic(tmp / "in", 30)
    work = os.environ.get("CUSTOMER_SYNC_WORK_DIR")
    if request.param == "sqlite":
        state: str = str(tmp / "state")
    else:
        server = request.getfixturevalue("postgres_server")
        state = server.database()
        os.environ["CUSTOMER_SYNC_WORK_DIR"] = str(tmp / "work")
    customers = read_table(source, "customers")
    customers.loc[customers.index[0], "postalCode"] = PLANTED_POSTAL
    write_table(source, "customers", customers)
    cards = read_table(source, "cards")
    accounts = read_table(source, "accounts")
    cards.loc[cards.index[0], "last4"] = PLANTED_LAST4
    visa = cards.index[cards["networkIdentifier"] == "4"][0]
    cards.loc[visa, "iin"] = PLANTED_IIN
    write_table(source, "cards", cards)
    renumbered = str(cards.loc[cards.index[0], "sourceCustomerId"])
    closed_account = accounts[accounts["status"] == "OPEN"].index[-1]
    closed_owner = str(accounts.loc[closed_account, "primarySourceCustomerId"])
    closed_account_id = str(accounts.loc[closed_account, "sourceAccountId"])
    busy = {renumbered, closed_owner}
    open_cards = cards[(cards["status"] == "OPEN") & ~cards["sourceCustomerId"].isin(busy)]
    closed_card = open_cards.index[0]
    card_owner = str(cards.loc[closed_card, "sourceCustomerId"])
    card_account = str(cards.loc[closed_card, "sourceAccountId"])
    ids = list(customers["sourceCustomerId"])
    busy.add(card_owner)
    holders = set(accounts["sourceCustomerIds"].str.split("|").explode()) - set(
        accounts["primarySourceCustomerId"]
    )  # a joint holder's vanishing would change a co-holder's tree too
    vanished = next(i for i in reversed(ids) if i not in busy and i not in holders)
    refused = next(i for i in ids[1:] if i not in busy | {vanished})
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({refused}))) as stub:
        first = main(_run(source, stub.url, state, "--max-held-back", "0.5"))
    cards = read_table(source, "cards")
    cards.loc[cards.index[0], "last4"] = "1357"
    cards.loc[closed_card, "status"] = "CLOSED"
    cards.loc[closed_card, "closeDate"] = "2026-11-30"
    write_table(source, "cards", cards)
    accounts = read_table(source, "accounts")
    accounts.loc[closed_account, "status"] = "CLOSED"
    accounts.loc[closed_account, "accountCloseDate"] = "2026-11-30"
    write_table(source, "accounts", accounts)
    remove_customers(source, {vanished})
    yield {
        "backend": request.param,
        "state": state,
        "source": source,
        "first": first,
        "renumbered": renumbered,
        "closed_owner": closed_owner,
        "closed_account": closed_account_id,
        "card_owner": card_owner,
        "card_account": card_account,
        "vanished": vanished,
        "refused": refused,
    }
    if work is None:
        os.environ.pop("CUSTOMER_SYNC_WORK_DIR", None)
    else:
        os.environ["CUSTOMER_SYNC_WORK_DIR"] = work


def _plan_json(night: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    args = ["plan", str(night["source"]), "--state", night["state"], "--format", "json"]
    assert main(args) == 0
    out = capsys.readouterr().out
    _assert_no_card_data(out)
    return {row["sourceCustomerId"]: row for row in json.loads(out)}


def test_the_plan_names_each_change_per_customer(
    night: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert night["first"] == 1  # one customer refused by the partner
    rows = _plan_json(night, capsys)
    closed = rows[night["closed_owner"]]
    assert (closed["action"], closed["method"], closed["reason"]) == ("update", "PUT", "changed")
    account = night["closed_account"]
    assert f"account {account}: status OPEN→CLOSED" in closed["changes"]
    assert f"account {account}: accountCloseDate null→2026-11-30T00:00:00Z" in closed["changes"]
    card = rows[night["card_owner"]]
    assert card["action"] == "update"
    assert any(
        line.startswith(f"card under account {night['card_account']} (holder {night['card_owner']}")
        and line.endswith(": closed")
        for line in card["changes"]
    ), card["changes"]
    assert rows[night["renumbered"]]["changes"] == [SENSITIVE_CHANGE]
    assert rows[night["vanished"]]["action"] == "absent"
    refused = rows[night["refused"]]
    assert (refused["action"], refused["method"]) == ("dead-letter retry", "POST")
    assert refused["changes"] and refused["changes"][0].startswith("partner refused: ")
    others = [r for cid, r in rows.items() if cid not in night.values()]
    assert others and {r["action"] for r in others} == {"unchanged"}


def test_table_and_csv_show_the_same_plan_without_card_data(
    night: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["plan", str(night["source"]), "--state", night["state"]]) == 0
    table = capsys.readouterr().out
    _assert_no_card_data(table)
    assert "status OPEN→CLOSED" in table and night["vanished"] in table
    assert table.rstrip().endswith("absent")  # the summary line: counts per action
    assert "unchanged" in table.splitlines()[-1]
    assert main(["plan", str(night["source"]), "--state", night["state"], "--format", "csv"]) == 0
    text = capsys.readouterr().out
    _assert_no_card_data(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 30  # 29 read + the vanished one
    by_id = {r["sourceCustomerId"]: r for r in rows}
    assert "status OPEN→CLOSED" in by_id[night["closed_owner"]]["changes"]


def test_planning_writes_nothing_to_the_ledger(night: dict[str, Any]) -> None:
    def snapshot() -> tuple[int, int, list[str]]:
        with open_ledger(night["state"], read_only=True) as ledger:
            runs = [r.run_id for r in ledger.runs()]
            parts = ledger.document_parts(
                ledger.acknowledged_fingerprints(ledger.acknowledged_ids())
            )
            return len(parts), ledger.known_customer_count(), runs

    before = snapshot()
    with planning_ledger(night["state"]) as ledger:
        plan = plan_extract(str(night["source"]), ledger)
    assert snapshot() == before
    assert before[0] == before[1] == 29  # parts were kept for every acknowledged customer
    assert plan.counts["absent"] == 1 and plan.counts["update"] == 3
    assert repr(plan).startswith("CustomerPlan(30 customers: ")
    frame = plan.to_pandas()
    assert list(frame.columns) == ["sourceCustomerId", "action", "method", "reason", "changes"]
    _assert_no_card_data(frame.to_csv())


def test_a_held_back_customer_is_in_the_plan_with_its_reasons(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 5)
    customers = read_table(source, "customers")
    customers.loc[0, "enrollmentOptInStatus"] = "MAYBE"
    write_table(source, "customers", customers)
    with planning_ledger(tmp_path / "none") as ledger:
        plan = plan_extract(str(source), ledger)
    held = [r for r in plan.rows if r.action == "held back"]
    assert [(r.sourceCustomerId, r.changes) for r in held] == [
        (
            str(customers.loc[0, "sourceCustomerId"]),
            ("customers.enrollmentOptInStatus:allowed_values",),
        )
    ]
    assert plan.counts["create"] == 4 and "MAYBE" not in repr(plan.to_pandas().to_dict())


def test_a_plan_without_a_ledger_creates_everyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 5)
    capsys.readouterr()
    assert main(["plan", str(source), "--state", str(tmp_path / "none"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["create"] * 5
    assert not (tmp_path / "none").exists()  # nothing created


def test_the_flow_dry_run_writes_the_same_plan_and_nothing_to_the_ledger(
    night: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {cid: (r["action"], r["changes"]) for cid, r in _plan_json(night, capsys).items()}

    def parts_kept() -> int:  # every row, whatever its fingerprint
        state = night["state"]
        if state.startswith("postgresql"):
            import psycopg

            with psycopg.connect(state) as db:
                row = db.execute("SELECT count(*) FROM document_parts").fetchone()
        else:
            db = sqlite3.connect(f"file:{Path(state) / 'ledger.sqlite3'}?mode=ro", uri=True)
            row = db.execute("SELECT count(*) FROM document_parts").fetchone()
            db.close()
        assert row is not None
        return int(row[0])

    before = parts_kept()
    out = tmp_path / "dry"
    args = [*_run(night["source"], "http://127.0.0.1:9", night["state"]), "--dry-run", str(out)]
    assert main(args) == 0
    assert parts_kept() == before
    for name in ("plan.json", "plan.csv"):
        assert (out / name).stat().st_mode & 0o777 == 0o600
        _assert_no_card_data((out / name).read_text())
    rows = json.loads((out / "plan.json").read_text())
    assert {r["sourceCustomerId"]: (r["action"], r["changes"]) for r in rows} == expected
    again = main(args)  # an earlier dry run's folder, plan files included, is replaced
    assert again == 0
