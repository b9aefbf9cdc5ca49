"""Helpers for flow tests: small extracts on disk and a flow call with fast retries."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd

from customer_sync.adapters.delivery import RetryPolicy
from customer_sync.devtools.synthetic import synthetic_extract, write_extract
from customer_sync.run.options import SyncOptions
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
    """The flow, called as a notebook would, with retries fast enough for tests.

    ``options`` are ``SyncOptions`` fields, plus the hooks ``retry_policy`` and
    ``progress`` (which are not parameters of the flow)."""
    from customer_sync.flows.sync import run_sync as run_flow

    retry_policy = options.pop("retry_policy", FAST_RETRIES)
    progress = options.pop("progress", False)
    built = SyncOptions.build(source=str(source), api_url=api_url, state_dir=str(state), **options)
    return asyncio.run(run_flow(built, retry_policy=retry_policy, progress=progress))
