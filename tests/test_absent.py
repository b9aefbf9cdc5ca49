"""Who disappeared: customers the partner holds that tonight's extract lacks.

The pure parts on tiny inputs; the run through the CLI against the stand-in partner and a
real SQLite ledger: a normal day (a few gone) is reported and goes on, a truncated extract
stops before anything is sent, exit 2.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow as pa
import pytest

from customer_sync.chunking.id_hash import id_partitions
from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.schemas.errors import ConfigError, GuardTripped
from customer_sync.transforms.absent import absent_customers, ids_of_partitions
from customer_sync.transforms.plan import absent_guard
from tests.flow_support import read_table, write_synthetic, write_table
from tests.test_cli import _run

# --- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "seen", "absent"),
    [
        ([], [["A"]], []),
        (["A", "B"], [], ["A", "B"]),
        (["C", "A", "B"], [["A"], ["B"]], ["C"]),
        (["A", "B"], [pa.array(["B", None]), ["A"]], []),
    ],
)
def test_absent_is_known_minus_every_id_seen_in_any_chunk(
    known: list[str], seen: list[list[str]], absent: list[str]
) -> None:
    assert absent_customers(known, seen) == absent


def test_a_shard_judges_only_the_known_ids_of_its_own_chunks() -> None:
    ids = [f"C{i:05d}" for i in range(200)]
    parts = id_partitions(pa.array(ids), 4)
    mine = ids_of_partitions(ids, 4, [1, 3])
    assert mine == [i for i, p in zip(ids, parts, strict=True) if p in (1, 3)]
    assert 0 < len(mine) < len(ids)


@pytest.mark.parametrize(("absent", "known", "trips"), [(0, 0, False), (5, 0, False),
    (10, 100, False), (11, 100, True), (100, 100, True)])  # fmt: skip
def test_the_absent_guard_trips_above_its_share(absent: int, known: int, trips: bool) -> None:
    if trips:
        with pytest.raises(GuardTripped, match=r"absent from this extract.*--allow-absent"):
            absent_guard(absent, known)
    else:
        absent_guard(absent, known)
    absent_guard(absent, known, allow_absent=True)  # never trips when allowed


def test_the_absent_share_must_be_a_share() -> None:
    with pytest.raises(ConfigError):
        absent_guard(1, 10, max_absent_share=1.5)


# --- the run --------------------------------------------------------------------------------
def remove_customers(source: Path, gone: set[str]) -> None:
    """The extract without these customers: their rows, accounts and cards."""
    customers = read_table(source, "customers")
    write_table(source, "customers", customers[~customers["sourceCustomerId"].isin(gone)])
    accounts = read_table(source, "accounts")
    dropped = accounts["primarySourceCustomerId"].isin(gone)
    gone_accounts = set(accounts.loc[dropped, "sourceAccountId"])
    write_table(source, "accounts", accounts[~dropped])
    cards = read_table(source, "cards")
    keep = ~cards["sourceAccountId"].isin(gone_accounts) & ~cards["sourceCustomerId"].isin(gone)
    write_table(source, "cards", cards[keep])


pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_few_customers_gone_are_reported_and_the_run_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    state = tmp_path / "state"
    ids = list(read_table(source, "customers")["sourceCustomerId"])
    with serve_stub_in_thread() as stub:
        assert main(_run(source, stub.url, state)) == 0
        gone = {ids[5], ids[17]}
        remove_customers(source, gone)
        capsys.readouterr()
        status = main(_run(source, stub.url, state))
    out = capsys.readouterr().out
    assert status == 0
    assert "absent from the extract: 2 of the 60 customers the partner holds" in out
    files = list((state / "runs").glob("*/absent-customers.txt"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert set(files[0].read_text().split()) == gone


def test_a_truncated_extract_stops_before_sending_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 60)
    state = tmp_path / "state"
    ids = list(read_table(source, "customers")["sourceCustomerId"])
    with serve_stub_in_thread() as stub:
        assert main(_run(source, stub.url, state)) == 0
        remove_customers(source, set(ids[40:]))  # the export stopped a third of the way short
        customers = read_table(source, "customers")
        customers.loc[0, "organizationId"] = "CHANGED"  # one real change, not sent either
        write_table(source, "customers", customers)
        requests_before = len(stub.requests)
        capsys.readouterr()
        status = main(_run(source, stub.url, state))
        err = capsys.readouterr().err
        sent_when_tripped = len(stub.requests) - requests_before
        allowed = main(_run(source, stub.url, state, "--allow-absent"))
    assert status == 2
    assert sent_when_tripped == 0
    last = err.strip().splitlines()[-1]  # (Prefect's own log lines come before it)
    assert last.startswith("customer-sync: 20 of the 60 customers the partner holds are absent")
    assert "Traceback" not in err
    assert allowed == 0
    report = sorted((state / "runs").glob("*/report.json"))
    assert report  # the tripped run still wrote its report


def test_a_held_back_customer_is_not_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "in", 40)
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        assert main(_run(source, stub.url, state)) == 0
        customers = read_table(source, "customers")
        customers.loc[3, "enrollmentOptInStatus"] = "NOT-A-STATUS"
        write_table(source, "customers", customers)
        capsys.readouterr()
        status = main(_run(source, stub.url, state))
    out = capsys.readouterr().out
    assert status == 1  # held back
    assert "absent from the extract: 0 of the 40" in out
