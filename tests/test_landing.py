"""Dated landing folders: ``/landing/{date}``, a missing folder, a bounded wait for the files.

The pure parts directly; the wait with real files appearing from another thread; the flow
itself under the Prefect test harness against the stand-in partner on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import threading
import time
from pathlib import Path

import pytest

from customer_sync.devtools.stub_server import serve_stub_in_thread
from customer_sync.flows.landing import (
    dated_source,
    has_date_template,
    landing_day,
    source_label,
    wait_for_landing,
)
from customer_sync.schemas.errors import ConfigError, InputError
from tests.flow_support import run_sync, write_synthetic

NIGHT = dt.date(2026, 11, 25)


def test_the_date_template_names_the_nights_folder() -> None:
    assert dated_source("/landing/{date}", NIGHT) == "/landing/2026-11-25"
    assert dated_source("s3://bank/in/{date:%Y%m%d}/", NIGHT) == "s3://bank/in/20261125/"
    assert dated_source("/landing/fixed", NIGHT) == "/landing/fixed"
    assert dated_source(None, NIGHT) is None
    assert has_date_template("/x/{date}") and not has_date_template("/x/y")


def test_the_landing_day_is_the_parameter_else_the_scheduled_day() -> None:
    assert landing_day(NIGHT) == NIGHT
    assert landing_day("2026-11-25") == NIGHT
    # outside a flow run the scheduled day is today (UTC)
    assert landing_day(None) == dt.datetime.now(dt.UTC).date()
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        landing_day("25/11/2026")


def test_the_source_label_is_the_folder_without_its_date() -> None:
    assert source_label("/srv/customer-sync/landing/{date}") == "landing"
    assert source_label("s3://bank/landing/{date:%Y%m%d}/") == "landing"
    assert source_label("data") == "data"
    assert source_label(None) == "files"


def test_files_already_there_are_found_at_once(tmp_path: Path) -> None:
    source = write_synthetic(tmp_path / "2026-11-25", 3)
    started = time.monotonic()
    asyncio.run(wait_for_landing(str(source), wait_seconds=30, poll_seconds=0.05))
    assert time.monotonic() - started < 5


def test_a_missing_folder_without_a_wait_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"folder not found$"):
        asyncio.run(wait_for_landing(str(tmp_path / "nope"), wait_seconds=0))


def test_files_that_land_during_the_wait_are_read(tmp_path: Path) -> None:
    ready = write_synthetic(tmp_path / "ready", 3)
    folder = tmp_path / "2026-11-25"

    def land() -> None:
        time.sleep(0.5)
        shutil.copytree(ready, folder)

    lander = threading.Thread(target=land)
    lander.start()
    try:
        asyncio.run(wait_for_landing(str(folder), wait_seconds=30, poll_seconds=0.05))
    finally:
        lander.join()
    assert (folder / "customers.csv").exists()


def test_files_that_never_land_fail_after_the_bounded_wait(tmp_path: Path) -> None:
    folder = tmp_path / "2026-11-25"
    folder.mkdir()  # the folder is there, the files never come
    started = time.monotonic()
    with pytest.raises(InputError, match=r"no customers\.csv or customers\.parquet .*waited 1 s"):
        asyncio.run(wait_for_landing(str(folder), wait_seconds=1, poll_seconds=0.1))
    assert 1.0 <= time.monotonic() - started < 10


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_reads_the_dated_folder_and_fails_clearly_without_it(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "landing" / "2026-11-25", 12)
    template = str(tmp_path / "landing" / "{date}")
    with serve_stub_in_thread() as stub:
        result = run_sync(Path(template), stub.url, tmp_path / "state", landing_date=NIGHT)
        assert len(stub.accepted) == 12
        assert result.exit_status == 0
        with pytest.raises(InputError, match=r"landing/2026-11-26: folder not found$"):
            run_sync(Path(template), stub.url, tmp_path / "state", landing_date="2026-11-26")
        with pytest.raises(InputError, match=r"2026-11-27: folder not found \(waited 1 s\)"):
            run_sync(
                Path(template),
                stub.url,
                tmp_path / "state",
                landing_date="2026-11-27",
                wait_for_files_seconds=1,
            )
        assert len(stub.accepted) == 12
