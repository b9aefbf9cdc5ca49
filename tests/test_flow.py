"""The sync-customers flow end to end: real Prefect engine, real HTTP to the stand-in
partner on 127.0.0.1, a real SQLite ledger."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import orjson
import pandas as pd
import pytest

from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.document import CustomersRequest
from customer_sync.schemas.errors import GuardTripped
from tests.conftest import SAMPLE_DATA
from tests.flow_support import read_table, run_sync, write_synthetic, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _max_request_size(stub: object) -> int:
    return max((r.customers or 0 for r in stub.requests), default=0)  # type: ignore[attr-defined]


def test_sample_extract_is_delivered_once_with_a_report(tmp_path: Path) -> None:
    customers = read_table(SAMPLE_DATA, "customers")["sourceCustomerId"]
    report = tmp_path / "report.json"
    with serve_stub_in_thread() as stub:
        result = run_sync(SAMPLE_DATA, stub.url, tmp_path / "state", report=str(report))
        accepted = dict(stub.accepted)

    assert set(accepted) == set(customers)
    assert all(a.times == 1 and a.method == "POST" for a in accepted.values())
    assert result.customers_sent == len(customers)
    assert result.exit_status == 0 and result.reconciles
    data = json.loads(report.read_text())
    for key in ("customers_read", "customers_held_back", "customers_sent", "customers_failed"):
        assert key in data
    assert data["customers_read"] == len(customers)
    batch = data["batches"][0]
    assert {"requestId", "status", "attempts", "customers"} <= set(batch)
    assert sorted(c for b in data["batches"] for c in b["customers"]) == sorted(customers)


@pytest.mark.parametrize("size", [0, 1, 50, 51, 120])
def test_every_customer_is_sent_exactly_once_in_batches_of_at_most_50(
    tmp_path: Path, size: int
) -> None:
    source = write_synthetic(tmp_path / "in", size)
    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, tmp_path / "state")
        accepted = dict(stub.accepted)
        biggest = _max_request_size(stub)

    assert result.customers_read == size
    assert result.customers_valid == size
    assert len(accepted) == size
    assert all(a.times == 1 for a in accepted.values())
    assert biggest <= 50
    assert len(result.batches) == math.ceil(size / 50)
    assert result.reconciles and result.exit_status == 0


def test_batch_size_that_does_not_divide_the_count(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 23)
    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, tmp_path / "state", batch_size=7, concurrency=3)
        sizes = sorted(r.customers for r in stub.requests)
    assert sizes == [2, 7, 7, 7]
    assert result.customers_sent == 23


def test_dry_run_writes_request_bodies_and_sends_nothing(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 120)
    out = tmp_path / "dry"
    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, tmp_path / "state", dry_run=str(out))
        requests = list(stub.requests)

    assert requests == []
    files = sorted(out.glob("*.json"))  # the bodies, not the dry run's marker
    assert len(files) == 3
    ids: list[str] = []
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        request = CustomersRequest.model_validate_json(path.read_bytes())
        ids += [c.sourceCustomerId for c in request.customers]
    assert len(ids) == len(set(ids)) == 120
    assert result.customers_planned == 120 and result.customers_sent == 0
    assert result.customers_created == 120
    assert result.reconciles


def test_a_second_run_on_the_same_input_sends_nothing(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    with serve_stub_in_thread() as stub:
        first = run_sync(source, stub.url, tmp_path / "state")
        before = stub.counters.requests
        second = run_sync(source, stub.url, tmp_path / "state")
        after = stub.counters.requests
    assert first.customers_sent == 60
    assert after == before
    assert second.customers_unchanged == 60 and second.customers_sent == 0
    assert second.reconciles and second.exit_status == 0


def test_a_changed_card_sends_its_holders_by_put_and_a_new_customer_by_post(
    tmp_path: Path,
) -> None:
    source = write_synthetic(tmp_path / "in", 200)
    accounts = read_table(source, "accounts")
    cards = read_table(source, "cards")
    joint = accounts[accounts["sourceCustomerIds"].str.contains("|", regex=False)]
    joint_ids = set(joint["sourceAccountId"])
    target = cards.index[cards["sourceAccountId"].isin(joint_ids)][0]
    account_id = cards.at[target, "sourceAccountId"]
    holders = set(
        accounts.loc[accounts["sourceAccountId"] == account_id, "sourceCustomerIds"]
        .iloc[0]
        .split("|")
    )
    customers = read_table(source, "customers")
    holders &= set(customers["sourceCustomerId"])
    assert len(holders) >= 2

    with serve_stub_in_thread() as stub:
        run_sync(source, stub.url, tmp_path / "state")
        cards.at[target, "cardType"] = (
            "DEBIT" if cards.at[target, "cardType"] != "DEBIT" else "CREDIT"
        )
        write_table(source, "cards", cards)
        newcomer = customers.iloc[[0]].assign(sourceCustomerId="C-NEW-1")
        write_table(source, "customers", pd.concat([customers, newcomer], ignore_index=True))
        # the stand-in keeps what it created (a PUT of an unknown customer is a 400), so
        # the second run's customers are the ones accepted once more, or for the first time
        before = {cid: a.times for cid, a in stub.accepted.items()}
        result = run_sync(source, stub.url, tmp_path / "state")
        accepted = {cid: a for cid, a in stub.accepted.items() if a.times > before.get(cid, 0)}

    assert {cid for cid, a in accepted.items() if a.method == "PUT"} == holders
    assert {cid for cid, a in accepted.items() if a.method == "POST"} == {"C-NEW-1"}
    assert result.customers_updated == len(holders) and result.customers_created == 1
    assert result.customers_unchanged == 200 - len(holders)
    assert result.reconciles


def test_a_customer_the_partner_rejects_is_dead_lettered_then_sent_by_the_next_run(
    tmp_path: Path,
) -> None:
    source = write_synthetic(tmp_path / "in", 80)
    bad = read_table(source, "customers")["sourceCustomerId"].iloc[17]
    state = tmp_path / "state"
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset({bad}))) as stub:
        first = run_sync(source, stub.url, state)
        assert bad not in stub.accepted and len(stub.accepted) == 79
    assert first.customers_failed == 1 and first.customers_rejected == 1
    assert first.exit_status == 1 and first.reconciles
    assert first.dead_letters is not None
    lines = Path(first.dead_letters).read_text().splitlines()
    assert [json.loads(line)["sourceCustomerId"] for line in lines] == [bad]
    assert stat.S_IMODE(Path(first.dead_letters).stat().st_mode) == 0o600

    with serve_stub_in_thread() as stub:
        second = run_sync(source, stub.url, state)
        assert set(stub.accepted) == {bad}
    assert second.customers_sent == 1 and second.customers_unchanged == 79
    assert second.exit_status == 0
    with SqliteLedger.open(state, read_only=True) as ledger:
        assert ledger.dead_letter_ids() == set()


def test_replay_resends_dead_letters_on_demand(tmp_path: Path) -> None:
    from customer_sync.flows.replay import replay_dead_letters
    from customer_sync.run.options import run_hooks
    from tests.flow_support import FAST_RETRIES

    source = write_synthetic(tmp_path / "in", 30)
    bad = set(read_table(source, "customers")["sourceCustomerId"].iloc[[3, 9]])
    state = tmp_path / "state"
    with serve_stub_in_thread(StubFaults(reject_ids=frozenset(bad))) as stub:
        run_sync(source, stub.url, state)
    import asyncio

    dry = tmp_path / "replay-dry"
    with serve_stub_in_thread() as stub:
        planned = asyncio.run(
            replay_dead_letters(api_url=stub.url, state_dir=str(state), dry_run=str(dry))
        )
        assert stub.counters.requests == 0
        with run_hooks(retry_policy=FAST_RETRIES):
            replayed = asyncio.run(replay_dead_letters(api_url=stub.url, state_dir=str(state)))
        assert set(stub.accepted) == bad
    assert planned.customers_planned == 2 and len(list(dry.glob("*.json"))) == 1
    assert replayed.customers_sent == 2 and replayed.exit_status == 0
    with SqliteLedger.open(state, read_only=True) as ledger:
        assert ledger.dead_letter_ids() == set()


def test_transient_failures_are_retried_per_batch_until_delivered(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 150)
    faults = StubFaults(fail_first_n=3, fail_with=503, rate_limit_share=0.3, retry_after=0.01)
    with serve_stub_in_thread(faults) as stub:
        result = run_sync(source, stub.url, tmp_path / "state")
        assert len(stub.accepted) == 150
    assert result.customers_sent == 150 and result.customers_failed == 0
    assert sum(b.attempts for b in result.batches) > len(result.batches)
    assert result.exit_status == 0


def test_held_back_guard_stops_before_anything_is_sent(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 100)
    customers = read_table(source, "customers")
    customers.loc[:9, "country"] = "XX"  # 10% of customers invalid, above the 5% default
    write_table(source, "customers", customers)
    with serve_stub_in_thread() as stub, pytest.raises(GuardTripped, match="held back"):
        run_sync(source, stub.url, tmp_path / "state", report=str(tmp_path / "r.json"))
    assert stub.counters.requests == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["customers_held_back"] == 10 and report["aborted"]

    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, tmp_path / "state", max_held_back_share=0.2)
        assert len(stub.accepted) == 90
    assert result.customers_held_back == 10 and result.exit_status == 1 and result.reconciles
    assert result.rejects is not None and Path(result.rejects).exists()


def test_mass_update_guard_trips_unless_allowed(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 40)
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        run_sync(source, stub.url, state)
        customers = read_table(source, "customers")
        customers["targetingIndicator"] = customers["targetingIndicator"].map(
            {"TARGET": "DO_NOT_TARGET", "DO_NOT_TARGET": "TARGET"}
        )
        write_table(source, "customers", customers)
        before = stub.counters.requests
        with pytest.raises(GuardTripped, match="allow-mass-update"):
            run_sync(source, stub.url, state)
        assert stub.counters.requests == before
        result = run_sync(source, stub.url, state, allow_mass_update=True)
    assert result.customers_updated == 40


def test_full_refresh_sends_everything_again(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 20)
    with serve_stub_in_thread() as stub:
        run_sync(source, stub.url, tmp_path / "state")
        result = run_sync(source, stub.url, tmp_path / "state", full_refresh=True)
        assert all(a.times == 2 and a.method == "PUT" for a in stub.accepted.values())
    assert result.customers_updated == 20


def test_parquet_and_csv_give_the_same_fingerprints(tmp_path: Path) -> None:
    csv = write_synthetic(tmp_path / "csv", 50, "csv", seed=3)
    parquet = write_synthetic(tmp_path / "pq", 50, "parquet", seed=3)
    with serve_stub_in_thread() as stub:
        run_sync(csv, stub.url, tmp_path / "state")
        result = run_sync(parquet, stub.url, tmp_path / "state")
    assert result.customers_unchanged == 50 and result.customers_sent == 0


def test_report_holds_no_card_data(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", 30)
    cards = read_table(source, "cards")
    with serve_stub_in_thread() as stub:
        result = run_sync(source, stub.url, tmp_path / "state", report=str(tmp_path / "r.json"))
    text = (tmp_path / "r.json").read_text()
    data = orjson.loads(text)
    assert data["customers_sent"] == 30 and result.reconciles
    assert "last4" not in text and "iin" not in text and "postalCode" not in text
    assert not any(f'"{value}"' in text for value in cards["iin"].unique())
