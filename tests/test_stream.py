"""Streaming (``run.chunk_loop``, the ``Streaming`` policy): chunks delivered while the next
ones are prepared, under a real Prefect flow, over real HTTP to the stand-in partner, with
a real SQLite ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.adapters.partner_client import PartnerClient, PartnerSettings
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.flows.deliver import deliver_spool
from customer_sync.flows.prepare import ChunkLayout, Preparation, SourceSpec, chunk_layout, prepare
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.chunk_loop import ChunkReady, Streaming, prepare_and_deliver
from customer_sync.run.report import summary_lines
from customer_sync.schemas.errors import GuardTripped, InputError
from customer_sync.schemas.records import BatchOutcome
from tests.flow_support import read_table, write_synthetic, write_table

pytestmark = pytest.mark.usefixtures("prefect_harness")

CUSTOMERS = 400
CHUNK = 100  # four chunks of about 100 customers
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)


def _chunked(source: str) -> ChunkLayout:
    """Chunks of about CHUNK customers, however small the extract."""
    return chunk_layout(SourceSpec(source), chunk_customers=CHUNK, whole_customers=0)


def _no_guard(totals: Preparation) -> None:
    return None


@flow(name="stream-under-test")
async def _stream_flow(
    source: str,
    url: str,
    state: str,
    check_guards: Any = _no_guard,
    on_chunk: Any = None,
) -> tuple[Preparation, list[BatchOutcome]]:
    run_dir = Path(state) / "run"
    ledger = SqliteLedger.open(Path(state))
    run_id = ledger.start_run({"source": source})
    settings = PartnerSettings(api_url=url, api_token=None)
    try:
        async with PartnerClient(settings) as client:

            async def deliver(ready: ChunkReady) -> Sequence[BatchOutcome]:
                if on_chunk is not None:
                    await on_chunk(run_dir, ready.number)
                return await deliver_spool(
                    ready.spool_path,
                    client,
                    ledger,
                    run_id,
                    batch_size=50,
                    concurrency=4,
                    policy=FAST,
                )

            return await prepare_and_deliver(
                SourceSpec(source),
                ledger,
                run_dir,
                run_dir / "rejects.csv",
                deliver=deliver,
                policy=Streaming(check_guards),
                full_refresh=False,
                mode="sync",
                layout=_chunked(source),
            )
    finally:
        ledger.close()


def _spools(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("spool-*.arrow"))


def test_every_customer_is_delivered_once_and_the_totals_match_prepare(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    with serve_stub_in_thread() as stub:
        preparation, outcomes = asyncio.run(
            _stream_flow(str(source), stub.url, str(tmp_path / "state"))
        )
        accepted = dict(stub.accepted)

    assert len(accepted) == CUSTOMERS
    assert all(a.times == 1 and a.method == "POST" for a in accepted.values())
    assert all(o.status == "acknowledged" for o in outcomes)
    assert sum(len(o.customer_ids) for o in outcomes) == CUSTOMERS
    ledger = SqliteLedger.open(tmp_path / "state")
    try:
        assert ledger.known_customer_count() == CUSTOMERS
    finally:
        ledger.close()
    # the same totals as preparing first (on a fresh ledger)
    fresh = SqliteLedger.open(tmp_path / "fresh")
    try:
        whole = prepare(
            SourceSpec(str(source)),
            fresh,
            tmp_path / "fresh" / "spool.arrow",
            tmp_path / "fresh" / "rejects.csv",
            full_refresh=False,
            mode="sync",
            layout=_chunked(str(source)),
        )
    finally:
        fresh.close()
    for name in ("customers_read", "customers_valid", "customers_held_back", "creates"):
        assert getattr(preparation, name) == getattr(whole, name), name
    assert _spools(tmp_path / "state" / "run") == []


def test_the_next_chunk_is_prepared_while_one_is_delivered_and_never_more_than_two_wait(
    tmp_path: Path,
) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    seen: list[int] = []
    overlapped: list[bool] = []

    async def on_chunk(run_dir: Path, number: int) -> None:
        # hold chunk 1's delivery until chunk 2 is spooled: preparation goes on meanwhile
        if number == 1:
            deadline = time.monotonic() + 60
            while len(_spools(run_dir)) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            overlapped.append(len(_spools(run_dir)) >= 2)
            await asyncio.sleep(1.0)  # long enough for the producer to fill the hand-over
        seen.append(len(_spools(run_dir)))

    with serve_stub_in_thread() as stub:
        asyncio.run(_stream_flow(str(source), stub.url, str(tmp_path / "state"), on_chunk=on_chunk))
        assert len(stub.accepted) == CUSTOMERS

    assert overlapped == [True]
    # the chunk being sent + two waiting + one the producer holds until there is room
    assert max(seen) <= 4
    assert len(seen) == 4


def test_a_guard_trip_stops_the_stream_after_the_chunks_already_sent(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)

    def trip_after_two_chunks(totals: Preparation) -> None:
        if totals.customers_read > 2 * CHUNK + CHUNK // 2:  # chunks are about CHUNK each
            raise GuardTripped("too many customers held back; nothing was sent.")

    with serve_stub_in_thread() as stub:
        with pytest.raises(GuardTripped) as tripped:
            asyncio.run(
                _stream_flow(
                    str(source),
                    stub.url,
                    str(tmp_path / "state"),
                    check_guards=trip_after_two_chunks,
                )
            )
        accepted = dict(stub.accepted)

    message = str(tripped.value)
    assert message.startswith("streaming stopped before chunk 3:")
    assert "nothing more was sent" in message
    assert f"({len(accepted):,} customers)" in message
    assert 0 < len(accepted) < CUSTOMERS
    run_dir = tmp_path / "state" / "run"
    assert _spools(run_dir) == []  # waiting chunks were dropped, not sent
    assert not (run_dir / "chunks").exists()  # workers and spill files are gone


def test_bad_input_stops_the_stream_with_the_input_error(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    write_table(source, "cards", read_table(source, "cards").drop(columns=["last4"]))
    with serve_stub_in_thread() as stub:
        with pytest.raises(InputError, match="last4"):
            asyncio.run(_stream_flow(str(source), stub.url, str(tmp_path / "state")))
        assert stub.accepted == {}
    assert _spools(tmp_path / "state" / "run") == []


def test_the_flow_streams_when_asked_and_a_second_run_sends_nothing(tmp_path: Path) -> None:
    from tests.flow_support import run_sync

    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        streamed = run_sync(source, stub.url, state, stream=True, chunk_customers=CHUNK)
        again = run_sync(source, stub.url, state)
        accepted = dict(stub.accepted)

    assert streamed.customers_sent == CUSTOMERS and streamed.reconciles
    assert streamed.exit_status == 0
    # the same stages and throughput as a guards-first run (a stream's overlap)
    assert {"prepare", "deliver"} <= set(streamed.seconds_by_stage)
    assert streamed.customers_per_second > 0
    assert any(line.startswith("throughput: ") for line in summary_lines(streamed))
    assert len(accepted) == CUSTOMERS and all(a.times == 1 for a in accepted.values())
    assert again.customers_sent == 0 and again.customers_unchanged == CUSTOMERS
    assert list((state / "runs" / streamed.run_id).glob("spool*")) == []


def test_a_stream_stopped_by_the_held_back_guard_reports_what_it_read(tmp_path: Path) -> None:
    import json

    from tests.flow_support import run_sync

    source = write_synthetic(tmp_path / "in", CUSTOMERS)
    customers = read_table(source, "customers")
    customers.loc[customers.index % 3 == 0, "country"] = "Narnia"  # a third are invalid
    write_table(source, "customers", customers)
    report = tmp_path / "report.json"
    with serve_stub_in_thread() as stub:
        with pytest.raises(GuardTripped, match="streaming stopped before chunk 1"):
            run_sync(
                source,
                stub.url,
                tmp_path / "state",
                stream=True,
                chunk_customers=CHUNK,
                report=str(report),
            )
        assert stub.accepted == {}
    data = json.loads(report.read_text())
    assert data["customers_read"] > 0 and data["customers_held_back"] > 0
    assert data["customers_sent"] == 0
    assert data["aborted"].startswith("streaming stopped before chunk 1")
    # the message names the rejects file that holds the held-back rows, as guards-first does
    assert "See the rejects file None" not in data["aborted"]
    rejects = Path(data["rejects"])
    assert f"See the rejects file {rejects};" in data["aborted"]
    assert rejects.stat().st_size > 0 and "Narnia" not in data["aborted"]
