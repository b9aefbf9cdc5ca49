"""The Python entry points (``from customer_sync import validate, plan, sync``), the short
reprs of what they return, and the result's frames, on the sample against the stand-in."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import customer_sync
from customer_sync.adapters.readers import read_extract
from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.run.report import BATCH_COLUMNS
from tests.conftest import SAMPLE_DATA
from tests.test_morning_after import _OURS

_SAMPLE_SECRETS = pd.concat(
    [
        pd.read_csv(SAMPLE_DATA / "customers.csv", dtype=str)["postalCode"],
        pd.read_csv(SAMPLE_DATA / "cards.csv", dtype=str)["last4"],
        pd.read_csv(SAMPLE_DATA / "cards.csv", dtype=str)["iin"],
    ]
).dropna()


def _no_sample_secrets(text: str) -> None:
    scrubbed = _OURS.sub("", text)  # run ids, times, fingerprints may hold any digits
    for value in set(_SAMPLE_SECRETS):
        assert value not in scrubbed, "a postal code, last4 or iin of the sample is shown"


def test_importing_the_package_imports_neither_pandas_nor_prefect() -> None:
    cheap = subprocess.run(
        [sys.executable, "-c", "import sys, customer_sync; "
         "print(sorted(m for m in ('pandas', 'prefect', 'pyarrow') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert cheap.stdout.strip() == "[]"
    from customer_sync import plan, sync, validate  # resolved on first use

    assert validate is customer_sync.api.validate and plan.__module__ == "customer_sync.api"
    assert callable(sync)
    with pytest.raises(AttributeError):
        customer_sync.no_such_name  # noqa: B018


def test_validate_and_extract_print_counts_not_frames() -> None:
    extract = read_extract(SAMPLE_DATA)
    text = repr(extract)
    assert text.startswith("Extract(customers 36, accounts ") and len(text) < 300
    validation = customer_sync.validate(SAMPLE_DATA)
    shown = repr(validation)
    assert shown.startswith("Validation(36 customers read: ") and len(shown) < 300
    _no_sample_secrets(text + shown)


def test_plan_of_the_sample_without_a_ledger(tmp_path: Path) -> None:
    plan = customer_sync.plan(SAMPLE_DATA, state=tmp_path / "state")
    assert plan.counts["create"] == 36
    assert repr(plan) == "CustomerPlan(36 customers: 36 create)"
    frame = plan.to_pandas()
    assert len(frame) == 36 and set(frame["method"]) == {"POST"}
    _no_sample_secrets(frame.to_csv())


@pytest.mark.usefixtures("prefect_harness")
def test_sync_returns_a_result_with_frames_and_a_short_repr(tmp_path: Path) -> None:
    with serve_stub_in_thread() as stub:
        result = customer_sync.sync(
            SAMPLE_DATA, state=tmp_path / "state", api_url=stub.url, progress=False
        )

        async def from_a_notebook_cell() -> object:  # a running event loop, as in Jupyter
            return customer_sync.sync(
                SAMPLE_DATA, state=tmp_path / "state", api_url=stub.url, progress=False
            )

        again = asyncio.run(from_a_notebook_cell())
    assert result.exit_status == 0 and result.customers_sent == 36
    text = repr(result)
    assert text.startswith(f"SyncResult({result.run_id}: completed, exit 0; 36 read, 36 sent")
    assert len(text) < 300
    counts = result.to_pandas()
    assert counts.index.tolist() == [result.run_id]
    assert counts.loc[result.run_id, "customers_sent"] == 36
    assert counts.loc[result.run_id, "status"] == "completed"
    batches = result.batches_frame()
    assert list(batches.columns) == list(BATCH_COLUMNS)
    assert batches["customers"].sum() == 36 and set(batches["status"]) == {"acknowledged"}
    assert repr(again).startswith("SyncResult(") and "36 unchanged" in repr(again)
    _no_sample_secrets(text + counts.to_csv() + batches.to_csv())
    history = customer_sync.history("C0000000001", state=tmp_path / "state")
    assert [s.outcome for s in history] == ["acknowledged"]
    assert customer_sync.runs(state=tmp_path / "state")[0].run_id == again.run_id  # type: ignore[attr-defined]
