"""Helpers for flow tests: small extracts on disk and a flow call with fast retries."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.devtools.synthetic import synthetic_extract, write_extract
from customer_sync.run.report import SyncResult

FAST_RETRIES = RetryPolicy(max_attempts=6, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)


def write_synthetic(folder: Path, customers: int, fmt: str = "csv", seed: int = 7) -> Path:
    """A valid synthetic extract of ``customers`` customers written to ``folder``."""
    write_extract(synthetic_extract(customers, seed=seed), folder, fmt)  # type: ignore[arg-type]
    return folder


def read_table(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)


def write_table(folder: Path, table: str, frame: pd.DataFrame) -> None:
    frame.to_csv(folder / f"{table}.csv", index=False)


def run_sync(source: Path, api_url: str, state: Path, **options: Any) -> SyncResult:
    """The flow, called as a notebook would, with retries fast enough for tests."""
    from customer_sync.flows.states import aresult_of
    from customer_sync.flows.sync import sync_customers

    options.setdefault("retry_policy", FAST_RETRIES)
    options.setdefault("progress", False)

    async def run() -> SyncResult:
        # the result of any run, green or not (a plain call raises for an incomplete one)
        final = await sync_customers(
            source=str(source),
            api_url=api_url,
            state_dir=str(state),
            return_state=True,
            **options,
        )
        return await aresult_of(final)

    return asyncio.run(run())
