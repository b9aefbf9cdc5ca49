"""The rejects file written chunk by chunk: same file as in one go, owner-only, atomic."""

from __future__ import annotations

import stat
from pathlib import Path

import pandas as pd
import pytest

from customer_sync.adapters.rejects import RejectsWriter, write_rejects
from customer_sync.transforms.validate import REJECT_COLUMNS


def _rejects(rows: range) -> pd.DataFrame:
    return pd.DataFrame(
        [{column: f"{column}-{n}" for column in REJECT_COLUMNS} for n in rows],
        columns=list(REJECT_COLUMNS),
    )


def test_chunks_written_one_by_one_make_the_file_written_at_once(tmp_path: Path) -> None:
    parts = [_rejects(range(0, 3)), _rejects(range(0)), _rejects(range(3, 5))]
    with RejectsWriter(tmp_path / "streamed.csv") as writer:
        for part in parts:
            writer.write(part)
    assert writer.rows == 5
    whole = write_rejects(pd.concat(parts), tmp_path / "whole.csv")
    streamed = tmp_path / "streamed.csv"
    assert streamed.read_bytes() == whole.read_bytes()
    assert stat.S_IMODE(streamed.stat().st_mode) == 0o600


def test_no_file_when_nothing_was_rejected(tmp_path: Path) -> None:
    with RejectsWriter(tmp_path / "rejects.csv") as writer:
        writer.write(_rejects(range(0)))
    assert writer.close() is None
    assert list(tmp_path.iterdir()) == []


def _fail_after_writing(path: Path) -> None:
    with RejectsWriter(path) as writer:
        writer.write(_rejects(range(2)))
        assert not path.exists()  # only the hidden temporary so far
        assert len(list(path.parent.iterdir())) == 1
        raise RuntimeError("the run failed")


def test_a_failed_run_leaves_no_partial_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the run failed"):
        _fail_after_writing(tmp_path / "rejects.csv")
    assert list(tmp_path.iterdir()) == []
