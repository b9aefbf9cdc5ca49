"""Shards: the runs of all shards together prepare exactly what one run prepares."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from customer_sync.adapters.spool import read_spool
from customer_sync.chunking.shards import Shard
from customer_sync.flows.prepare import Preparation, SourceSpec, chunk_layout, prepare
from customer_sync.ledger.factory import open_ledger
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.schemas.errors import ConfigError
from tests.extract_factory import write_files
from tests.test_chunked_validation import _account, _card, _customer, messy_rows


def test_a_shard_is_written_n_of_m() -> None:
    assert Shard.parse("2/3") == Shard(2, 3)
    assert Shard.parse(" 1 / 1 ") == Shard(1, 1)
    assert str(Shard(2, 3)) == "2/3"
    for bad in ("0/2", "3/2", "1", "a/b", "1/0", "-1/2"):
        with pytest.raises(ConfigError, match="shard"):
            Shard.parse(bad)


def test_every_chunk_belongs_to_exactly_one_shard() -> None:
    shards = [Shard(n, 3) for n in (1, 2, 3)]
    owned = [shard.partitions(10) for shard in shards]
    assert sorted(p for part in owned for p in part) == list(range(10))
    assert [len(part) for part in owned] == [4, 3, 3]


def _prepare(source: Path, state: Path, shard: Shard | None) -> tuple[Preparation, Path]:
    run = state / "runs" / "r1"
    with SqliteLedger.open(state) as ledger:
        spec = SourceSpec(str(source))
        preparation = prepare(
            spec,
            ledger,
            run / "spool.arrow",
            run / "rejects.csv",
            full_refresh=False,
            mode="sync",
            layout=chunk_layout(
                spec, chunk_customers=4, whole_customers=1_000 if shard is None else 0, shard=shard
            ),
        )
    return preparation, run


@pytest.mark.usefixtures("prefect_harness")
def test_shards_together_prepare_what_one_run_prepares(tmp_path: Path) -> None:
    rows = messy_rows()
    for n in range(20):  # plenty of valid customers, a third with joint accounts
        rows["customers"].append(_customer(f"V{n:02d}"))
        holders = f"V{n:02d}|V{(n + 7) % 20:02d}" if n % 3 == 0 else None
        rows["accounts"].append(_account(f"VA{n:02d}", f"V{n:02d}", holders))
        rows["cards"].append(_card(f"VA{n:02d}", f"V{n:02d}", "1234", "412345", "4"))
    write_files(rows, tmp_path / "in", "csv")

    whole, whole_run = _prepare(tmp_path / "in", tmp_path / "whole", None)
    spooled: list[dict[str, object]] = []
    rejects: list[pd.DataFrame] = []
    totals = Preparation()
    for number in (1, 2, 3):
        part, run = _prepare(tmp_path / "in", tmp_path / f"shard{number}", Shard(number, 3))
        assert 0 < part.extract_share < 1
        spooled += [r for b in read_spool(run / "spool.arrow") for r in b.to_pylist()]
        if (run / "rejects.csv").exists():
            rejects.append(pd.read_csv(run / "rejects.csv", dtype=str))
        for name in ("customers_read", "customers_valid", "customers_held_back", "creates"):
            setattr(totals, name, getattr(totals, name) + getattr(part, name))

    ids = [r["customer_id"] for r in spooled]
    assert len(ids) == len(set(ids))  # no customer is sent by two shards
    expected = [r for b in read_spool(whole_run / "spool.arrow") for r in b.to_pylist()]
    assert sorted(spooled, key=lambda r: str(r["customer_id"])) == sorted(
        expected, key=lambda r: str(r["customer_id"])
    )
    for name in ("customers_read", "customers_valid", "customers_held_back", "creates"):
        assert getattr(totals, name) == getattr(whole, name), name
    key = ["table", "row", "column", "rule"]
    together = pd.concat(rejects).sort_values(key).reset_index(drop=True)
    alone = pd.read_csv(whole_run / "rejects.csv", dtype=str).sort_values(key)
    pd.testing.assert_frame_equal(together, alone.reset_index(drop=True))


@pytest.mark.usefixtures("prefect_harness")
def test_shard_runs_deliver_the_extract_once_between_them(tmp_path: Path) -> None:
    from customer_sync.devtools.stub_server import serve_stub_in_thread
    from tests.flow_support import run_sync, write_synthetic

    source = write_synthetic(tmp_path / "in", 300)
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        first = run_sync(source, stub.url, state, shard="1/2", chunk_customers=50)
        second = run_sync(source, stub.url, state, shard="2/2", chunk_customers=50)
        whole = run_sync(source, stub.url, state, chunk_customers=50)
        accepted = dict(stub.accepted)

    assert first.customers_sent > 0 and second.customers_sent > 0
    assert first.customers_sent + second.customers_sent == 300
    assert first.customers_read + second.customers_read == 300
    assert len(accepted) == 300 and all(a.times == 1 for a in accepted.values())
    assert whole.customers_sent == 0 and whole.customers_unchanged == 300


@pytest.mark.usefixtures("prefect_harness")
def test_a_malformed_shard_is_a_clear_error(tmp_path: Path) -> None:
    from tests.flow_support import run_sync, write_synthetic

    source = write_synthetic(tmp_path / "in", 10)
    with pytest.raises(ConfigError, match="shard must be written N/M"):
        run_sync(source, "http://127.0.0.1:9", tmp_path / "state", shard="half")


def _shard_command(
    source: Path, url: str, state: Path | str, number: int, report: Path
) -> list[str]:
    import sys

    return [
        sys.executable, "-m", "customer_sync.cli.app", "run", str(source), "--api-url", url,
        "--state", str(state), "--shard", f"{number}/2", "--chunk-customers", "100",
        "--no-progress", "--report", str(report),
    ]  # fmt: skip


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_shard_processes_at_once_share_one_ledger(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two ``customer-sync run --shard`` processes in parallel, one state folder or one
    PostgreSQL database (the shared ledger of several workers)."""
    import json
    import os
    import subprocess

    import prefect.settings

    from customer_sync.devtools.stub_server import serve_stub_in_thread
    from tests.flow_support import write_synthetic

    source = write_synthetic(tmp_path / "in", 600)
    state: Path | str = tmp_path / "state"
    env = {**os.environ, "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value())}
    if backend == "postgresql":
        state = request.getfixturevalue("postgres_server").database()
        env["CUSTOMER_SYNC_WORK_DIR"] = str(tmp_path / "work")  # the runs' own files
    repo = Path(__file__).resolve().parent.parent
    with serve_stub_in_thread() as stub:
        processes = [
            subprocess.Popen(
                _shard_command(source, stub.url, state, n, tmp_path / f"report{n}.json"),
                cwd=repo,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for n in (1, 2)
        ]
        for process in processes:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        accepted = dict(stub.accepted)

    reports = [json.loads((tmp_path / f"report{n}.json").read_text()) for n in (1, 2)]
    assert sum(r["customers_sent"] for r in reports) == 600
    assert all(r["reconciles"] for r in reports)
    assert len(accepted) == 600 and all(a.times == 1 for a in accepted.values())
    with open_ledger(state) as ledger:
        assert ledger.known_customer_count() == 600
        assert [run.status for run in ledger.runs()] == ["completed", "completed"]
        assert ledger.interrupted_batches() == []
