"""Which runs are alive: a run holds an ``flock`` on ``<state>/locks/<run_id>.lock``.

The kernel drops the lock when the process dies, even by SIGKILL, so a crashed run is told
apart from a running one (in this or another process) without heartbeats or pid guessing.
A shared-database ledger does the same with a session-level advisory lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class RunLocks:
    """The locks this process holds, and a check on anyone's."""

    def __init__(self, folder: Path, writable: bool) -> None:
        self._folder = folder
        self._writable = writable
        self._held: dict[str, int] = {}

    def _path(self, run_id: str) -> Path:
        return self._folder / f"{run_id}.lock"

    def acquire(self, run_id: str) -> None:
        """Hold the lock of a new run until ``release`` or until this process ends."""
        self._folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self._path(run_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        self._held[run_id] = fd

    def release(self, run_id: str) -> None:
        fd = self._held.pop(run_id, None)
        if fd is None:
            return
        # unlink first: whoever opens the file after this finds it gone (stopped)
        with contextlib.suppress(FileNotFoundError):
            self._path(run_id).unlink()
        os.close(fd)

    def release_all(self) -> None:
        for run_id in list(self._held):
            self.release(run_id)

    def is_alive(self, run_id: str) -> bool:
        """Whether the run's process still holds its lock."""
        if run_id in self._held:
            return True
        try:
            fd = os.open(self._path(run_id), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def forget(self, run_id: str) -> None:
        """Remove the lock file of a run found stopped."""
        if self._writable:
            with contextlib.suppress(FileNotFoundError):
                self._path(run_id).unlink()
