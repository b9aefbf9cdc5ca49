"""The rejects file: one CSV row per problem found in an extract, readable by its owner only.

Its columns are ``customer_sync.transforms.validate.REJECT_COLUMNS``. Reasons never hold values of
sensitive columns (``last4``, ``iin``, postal codes) nor values of card-data shape in any
column (``transforms.card_shape``), but the file still names customers and accounts, so it
is created with mode 0600 and replaced atomically (a reader never sees half a file, and a
crash never leaves one). People open it in spreadsheets: every cell that a spreadsheet
would run as a formula is neutralised (``customer_sync.adapters.csv_safety``).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TextIO

import pandas as pd

from customer_sync.adapters.csv_safety import neutralised_frame

FILE_MODE = 0o600


def write_rejects(rejects: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``rejects`` as UTF-8 CSV (header always, even when empty) at ``path``, mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start: no window where others could read it
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            neutralised_frame(rejects).to_csv(
                stream, index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC
            )
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


class RejectsWriter:
    """The rejects file written a chunk at a time, so a run's rejects are never all in
    memory: created 0600 beside ``path``, moved into place by ``close`` (atomic, as
    ``write_rejects``), removed if the run fails first. Rows keep the order they are
    written in (chunk by chunk); each names its table and row.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.rows = 0
        self._temporary: str | None = None
        self._stream: TextIO | None = None

    def write(self, rejects: pd.DataFrame) -> None:
        if not len(rejects):
            return
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, self._temporary = tempfile.mkstemp(
                prefix=f".{self.path.name}.", dir=self.path.parent
            )
            self._stream = os.fdopen(handle, "w", encoding="utf-8", newline="")
        neutralised_frame(rejects).to_csv(
            self._stream,
            index=False,
            header=self.rows == 0,
            lineterminator="\n",
            # every text cell quoted: a CR inside one is not a line break (LF ends a line,
            # and minimal quoting would leave a CR bare)
            quoting=csv.QUOTE_NONNUMERIC,
        )
        self.rows += len(rejects)

    def close(self) -> Path | None:
        """Put the file in place; ``None`` when there was nothing to reject."""
        if self._stream is None or self._temporary is None:
            return None
        self._stream.close()
        os.chmod(self._temporary, FILE_MODE)
        os.replace(self._temporary, self.path)
        self._stream = self._temporary = None
        return self.path

    def discard(self) -> None:
        if self._stream is not None and self._temporary is not None:
            self._stream.close()
            Path(self._temporary).unlink(missing_ok=True)
            self._stream = self._temporary = None

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
