"""The rejects file: one CSV row per problem found in an extract, readable by its owner only.

Its columns are ``transforms.validate.REJECT_COLUMNS``. Reasons never hold values of
sensitive columns (``last4``, ``iin``, postal codes), but the file still names customers and
accounts, so it is created with mode 0600 and replaced atomically (a reader never sees half
a file, and a crash never leaves one).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

FILE_MODE = 0o600


def write_rejects(rejects: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``rejects`` as UTF-8 CSV (header always, even when empty) at ``path``, mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start: no window where others could read it
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            rejects.to_csv(stream, index=False, lineterminator="\n")
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
