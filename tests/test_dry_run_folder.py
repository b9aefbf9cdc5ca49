"""A dry run writes only into a folder that is new, empty or its own earlier output, and
every body it writes is owner-only (card data); the folder is checked before the extract
is read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from customer_sync.flows.deliver import DRY_RUN_MARKER, check_dry_run_folder
from customer_sync.schemas.errors import ConfigError
from tests.flow_support import run_sync, write_synthetic


def _modes(folder: Path) -> set[int]:
    return {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def test_foreign_or_file_folders_are_refused(tmp_path: Path) -> None:
    check_dry_run_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_dry_run_folder(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "000001-POST.json").write_text("{}")  # looks like ours, no marker
    with pytest.raises(ConfigError, match="not written by a dry run"):
        check_dry_run_folder(tmp_path / "notes")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / DRY_RUN_MARKER).write_text("")
    (tmp_path / "mixed" / "salaries.xlsx").write_text("x")
    with pytest.raises(ConfigError, match="not written by a dry run"):
        check_dry_run_folder(tmp_path / "mixed")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_dry_run_folder(tmp_path / "file")


@pytest.mark.usefixtures("prefect_harness")
def test_a_foreign_folder_is_refused_before_the_extract_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("someone's file")
    missing = tmp_path / "no-such-extract"  # reading it would be an InputError
    with pytest.raises(ConfigError, match="not written by a dry run"):
        run_sync(missing, "http://127.0.0.1:9", tmp_path / "state", dry_run=str(out))
    assert (out / "keep.txt").read_text() == "someone's file"


@pytest.mark.usefixtures("prefect_harness")
def test_a_second_dry_run_replaces_the_first_with_owner_only_bodies(tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    first = run_sync(write_synthetic(tmp_path / "big", 120), "http://127.0.0.1:9", state,
                     dry_run=str(out))  # fmt: skip
    assert first.customers_planned == 120
    bodies = sorted(p for p in out.iterdir() if p.name[0].isdigit())
    assert len(bodies) == 3
    assert (out / "plan.json").is_file() and (out / "plan.csv").is_file()  # the plan per customer
    for body in bodies:
        body.chmod(0o644)  # as an older release left them
    run_sync(write_synthetic(tmp_path / "small", 30), "http://127.0.0.1:9", state,
             dry_run=str(out))  # fmt: skip
    names = sorted(p.name for p in out.iterdir())
    # no body of the first left; its plan replaced by this one's
    assert names == sorted([DRY_RUN_MARKER, "000001-POST.json", "plan.csv", "plan.json"])
    assert len(json.loads((out / "plan.json").read_text())) == 30
    assert _modes(out) == {0o600}
