"""A bad night is not green: the Prefect state, the CLI's exit status, the report's
``exit_status`` and the ledger's run status tell the same story for every outcome.

Each outcome is produced for real: the command (``customer_sync.cli.app.main``) in this
process, the flow under the Prefect test harness's server, the stand-in partner on
127.0.0.1 (rejections and 503s injected), a real SQLite ledger. The flow run is found from
the ledger's run row (which records the Prefect flow-run id) and read back from the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import StateType

from customer_sync.cli.app import main
from customer_sync.devtools.stub_server import StubFaults, serve_stub_in_thread
from customer_sync.flows.states import (
    INCOMPLETE,
    RunNotCompleted,
    aresult_of,
    final_state,
    state_message,
)
from customer_sync.ledger.sqlite import SqliteLedger
from customer_sync.run.report import SyncResult
from customer_sync.schemas.errors import GuardTripped, InputError
from tests.flow_support import read_table, write_synthetic, write_table

# --- the rule (pure) ---------------------------------------------------------------------------


def test_only_a_run_that_delivered_everything_is_completed() -> None:
    done = final_state(SyncResult(run_id="r", customers_read=3, customers_sent=3))
    assert done.type == StateType.COMPLETED and done.name == "Completed"
    assert done.message == "3 customers delivered of 3 read; 0 unchanged"

    held = SyncResult(run_id="r", customers_read=3, customers_sent=2, customers_held_back=1)
    state = final_state(held)
    assert state.type == StateType.FAILED and state.name == INCOMPLETE
    assert state.message is not None and "1 customers held back" in state.message
    assert "2 customers delivered of 3 read" in state.message

    rejected = SyncResult(customers_read=4, customers_sent=2, customers_failed=2)
    rejected.customers_rejected = 1
    message = final_state(rejected).message or ""
    assert "1 customers rejected by the partner" in message
    assert "1 customers failed after their retries" in message


@pytest.mark.parametrize(
    ("error", "state_type", "name"),
    [
        (GuardTripped("too many held back"), StateType.FAILED, "Failed"),
        (InputError("customers.csv", "empty file"), StateType.FAILED, "Failed"),
        (RuntimeError("boom"), StateType.FAILED, "Failed"),
        (KeyboardInterrupt(), StateType.CRASHED, "Interrupted"),
    ],
)
def test_a_stopped_run_is_never_green(
    error: BaseException, state_type: StateType, name: str
) -> None:
    result = SyncResult(customers_read=5, customers_sent=5)
    result.stop(error)
    state = final_state(result)
    assert (state.type, state.name) == (state_type, name)
    assert state.message == state_message(result)
    assert state.message.startswith(result.outcome.status)


def test_the_result_is_read_back_from_any_final_state() -> None:
    held = SyncResult(customers_read=2, customers_sent=1, customers_held_back=1)
    assert asyncio.run(aresult_of(final_state(held))) is held
    done = SyncResult(customers_read=1, customers_sent=1)
    assert asyncio.run(aresult_of(final_state(done))) is done
    error = RunNotCompleted(held)
    assert error.exit_status == 1 and error.result is held


# --- every outcome, for real --------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How to spoil tonight's extract or partner, and what all four must then say."""

    prepare: Callable[[Path], None]
    faults: StubFaults
    options: tuple[str, ...]
    exit_status: int
    ledger_status: str
    state_type: StateType
    state_name: str


def _nothing(source: Path) -> None:
    pass


def _hold_back(share: int) -> Callable[[Path], None]:
    def spoil(source: Path) -> None:
        customers = read_table(source, "customers")
        customers.loc[: share - 1, "country"] = "XX"  # invalid: held back
        write_table(source, "customers", customers)

    return spoil


def _drop_a_column(source: Path) -> None:
    accounts = read_table(source, "accounts")
    write_table(source, "accounts", accounts.drop(columns=[accounts.columns[1]]))


def _first_ids(source: Path, count: int) -> frozenset[str]:
    return frozenset(read_table(source, "customers")["sourceCustomerId"].iloc[:count])


CUSTOMERS = 20

CASES: dict[str, Case] = {
    "success": Case(_nothing, StubFaults(), (), 0, "completed", StateType.COMPLETED, "Completed"),
    "rejected": Case(
        _nothing, StubFaults(), (), 1, "incomplete", StateType.FAILED, INCOMPLETE
    ),  # reject_ids filled in below, from the extract
    "held back under the guard": Case(
        _hold_back(1), StubFaults(), (), 1, "incomplete", StateType.FAILED, INCOMPLETE
    ),
    "held back over the guard": Case(
        _hold_back(5), StubFaults(), (), 2, "aborted", StateType.FAILED, "Failed"
    ),
    "transient failure": Case(
        _nothing,
        StubFaults(fail_each_batch=100, fail_with=503),
        ("--concurrency", "1"),
        1,
        "incomplete",
        StateType.FAILED,
        INCOMPLETE,
    ),
    "bad input": Case(_drop_a_column, StubFaults(), (), 2, "aborted", StateType.FAILED, "Failed"),
}


async def _flow_run(flow_run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)  # type: ignore[arg-type]


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("case_name", list(CASES))
def test_exit_status_report_ledger_and_prefect_state_agree(
    case_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[case_name]
    source = write_synthetic(tmp_path / "landing", CUSTOMERS)
    case.prepare(source)
    faults = case.faults
    if case_name == "rejected":
        faults = StubFaults(reject_ids=_first_ids(source, 2))
    state, report_path = tmp_path / "state", tmp_path / "report.json"
    with serve_stub_in_thread(faults) as stub:
        exit_status = main(
            [
                "run", str(source), "--api-url", stub.url, "--state", str(state),
                "--no-progress", "--report", str(report_path), *case.options,
            ]
        )  # fmt: skip
    capsys.readouterr()

    report = json.loads(report_path.read_text(encoding="utf-8"))
    with SqliteLedger.open(state, read_only=True) as ledger:
        run = ledger.last_run()
    assert run is not None
    flow_run_id = run.parameters.get("prefect_flow_run_id")
    assert isinstance(flow_run_id, str), "the ledger's run row must name its Prefect flow run"
    flow_run = asyncio.run(_flow_run(flow_run_id))

    told = (exit_status, report["exit_status"], run.status, flow_run.state.type)
    expected = (case.exit_status, case.exit_status, case.ledger_status, case.state_type)
    assert told == expected, f"{case_name}: {flow_run.state.message}"
    assert flow_run.state.name == case.state_name
    assert report["run_id"] == run.run_id
    if case.state_type != StateType.COMPLETED:
        # the reason is in the state's message, and the run was not retried
        assert flow_run.state.message and report["reason"] in flow_run.state.message
        assert flow_run.run_count == 1 and flow_run.empirical_policy.retries == 0
    # named for what it delivers: the landing day (scheduled: today) and the folder
    assert flow_run.name == f"sync-{dt.datetime.now(dt.UTC).date().isoformat()}-landing"


@pytest.mark.usefixtures("prefect_harness")
def test_a_plain_call_of_an_incomplete_run_raises_with_its_numbers(tmp_path: Path) -> None:
    from customer_sync.flows.sync import sync_customers
    from customer_sync.run.options import SyncOptions, run_hooks
    from tests.flow_support import FAST_RETRIES

    source = write_synthetic(tmp_path / "landing", 40)
    _hold_back(1)(source)  # 2.5%: under the guard
    with serve_stub_in_thread() as stub:
        options = SyncOptions(source=str(source), api_url=stub.url, state_dir=str(tmp_path / "s"))
        with (
            run_hooks(retry_policy=FAST_RETRIES, progress=False),
            pytest.raises(RunNotCompleted, match="1 customers held back") as raised,
        ):
            asyncio.run(sync_customers(**options.groups()))
        assert len(stub.accepted) == 39
    assert raised.value.result.customers_sent == 39 and raised.value.exit_status == 1


def _events_about(run_id: str, prefix: str) -> list[dict[str, Any]]:
    """The events the server stored about the run ``run_id`` (shipped in batches: polled)."""
    import time

    import httpx
    import prefect.settings

    api = str(prefect.settings.PREFECT_API_URL.value())
    body = {"filter": {"event": {"prefix": [prefix]}}, "limit": 50}
    deadline = time.monotonic() + 60.0
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not found:
        answer = httpx.post(f"{api}/events/filter", json=body, timeout=30)
        answer.raise_for_status()
        found = [
            event
            for event in answer.json()["events"]
            if event["resource"].get("prefect.resource.name") == run_id
        ]
        if not found:
            time.sleep(0.5)
    return found


@pytest.mark.usefixtures("prefect_harness")
def test_a_tripped_guard_is_an_event_on_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_synthetic(tmp_path / "landing", CUSTOMERS)
    _hold_back(5)(source)  # 25%: above the 5% guard
    state = tmp_path / "state"
    with serve_stub_in_thread() as stub:
        assert main(["run", str(source), "--api-url", stub.url, "--state", str(state),
                     "--no-progress"]) == 2  # fmt: skip
        assert stub.counters.requests == 0
    capsys.readouterr()
    with SqliteLedger.open(state, read_only=True) as ledger:
        run = ledger.last_run()
    assert run is not None and run.status == "aborted"
    [tripped] = _events_about(run.run_id, "customer-sync.guard.tripped")
    assert "would be held back, above the limit of 5.0%" in tripped["payload"]["guard"]
    assert tripped["payload"]["held_back"] == 5 and tripped["payload"]["delivered"] == 0
    [ended] = _events_about(run.run_id, "customer-sync.run.aborted")
    assert ended["payload"]["exit_status"] == 2
