"""One delivering run per ledger at a time, shards of one layout excepted.

Each holder of the delivery lock keeps a file ``<state>/locks/holder-<id>.json`` under an
exclusive ``flock`` for as long as it delivers; the file says who it is (run id once known,
host, pid, since when) and what it delivers (every customer, or some chunks of a layout).
The kernel drops the ``flock`` when the process dies, even by SIGKILL, so a holder file
nobody holds is stale and removed. Taking the lock (reading the live holders, checking
for a conflict and writing one's own file) happens under a short exclusive ``flock`` on
``<state>/locks/registry.lock``, so two runs starting together cannot both see the other
missing.

Two holders conflict unless both are shards of the same chunk layout (same number of
chunks) owning disjoint chunks: a chunk is a bucket of a hash of the customer id, so such
shards never send the same customer. A plain run and a replay deliver every customer and
conflict with everyone. A shared-database ledger does the same with advisory locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from customer_sync.schemas.errors import ConfigError

log = logging.getLogger(__name__)

REGISTRY: Final = "registry.lock"
WAIT_LOG_EVERY: Final = 30.0  # seconds between "still waiting" lines
_POLL: Final = 0.2  # seconds between attempts while waiting


class RunLocked(ConfigError):
    """Another run on the same ledger delivers customers this run would deliver."""


@dataclass(frozen=True)
class DeliveryScope:
    """What a run delivers: every customer (``owned`` None), or the chunks ``owned`` of
    an extract split in ``partitions`` chunks (a shard)."""

    owned: frozenset[int] | None = None
    partitions: int = 1

    @classmethod
    def of(cls, owned: Sequence[int] | None, partitions: int) -> DeliveryScope:
        return cls(None if owned is None else frozenset(owned), partitions)

    def conflicts_with(self, other: DeliveryScope) -> bool:
        if self.owned is None or other.owned is None or self.partitions != other.partitions:
            return True
        return bool(self.owned & other.owned)

    def describe(self) -> str:
        if self.owned is None:
            return "every customer"
        return f"chunks {sorted(self.owned)} of {self.partitions}"


@dataclass(frozen=True)
class Holder:
    """A live holder as its file describes it."""

    run_id: str | None
    host: str
    pid: int
    since: str
    scope: DeliveryScope

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "a run (starting)"
        return (
            f"{run} on host {self.host}, pid {self.pid}, started {self.since}, "
            f"delivering {self.scope.describe()}"
        )


def _holder_json(holder: Holder) -> bytes:
    owned = None if holder.scope.owned is None else sorted(holder.scope.owned)
    return orjson.dumps(
        {
            "run_id": holder.run_id,
            "host": holder.host,
            "pid": holder.pid,
            "since": holder.since,
            "owned": owned,
            "partitions": holder.scope.partitions,
        }
    )


def _holder_of(raw: bytes) -> Holder:
    data = orjson.loads(raw)
    return Holder(
        data.get("run_id"),
        str(data["host"]),
        int(data["pid"]),
        str(data["since"]),
        DeliveryScope.of(data.get("owned"), int(data.get("partitions", 1))),
    )


class DeliveryLock:
    """The delivery lock of one run, held from ``acquire`` to ``release`` (or death)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._fd: int | None = None
        self._path: Path | None = None
        self._holder: Holder | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @contextlib.contextmanager
    def _registry(self) -> Iterator[None]:
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self._folder / REGISTRY, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise ConfigError(
                f"{self._folder}: cannot create the run lock: {error.strerror or error}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for milliseconds by whoever has it
            yield
        finally:
            os.close(fd)

    def _live_holders(self) -> list[Holder]:
        """The holders whose process still holds its file; stale files are removed."""
        live: list[Holder] = []
        for path in sorted(self._folder.glob("holder-*.json")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.append(_holder_of(os.pread(fd, 1 << 16, 0)))
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # its process died: the kernel dropped its flock
            finally:
                os.close(fd)
        return live

    def _try(self, scope: DeliveryScope) -> list[Holder]:
        """Take the lock, or the holders in the way."""
        with self._registry():
            conflicts = [h for h in self._live_holders() if h.scope.conflicts_with(scope)]
            if conflicts:
                return conflicts
            path = self._folder / f"holder-{uuid.uuid4().hex}.json"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            holder = Holder(
                None,
                socket.gethostname(),
                os.getpid(),
                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                scope,
            )
            os.write(fd, _holder_json(holder))
            self._fd, self._path, self._holder = fd, path, holder
            return []

    def acquire(self, scope: DeliveryScope, wait: float | None = 0.0) -> None:
        """Hold the delivery lock for ``scope``; raises ``RunLocked`` naming the other
        run(s) when it is taken: at once (``wait`` 0), after ``wait`` seconds, or never
        (``wait`` None: until the other runs end)."""
        if self.held:
            return
        wait_for_delivery_lock(lambda: self._try(scope), str(self._folder.parent), wait)

    def name_run(self, run_id: str) -> None:
        """Write the run id into the holder file (once ``start_run`` chose it)."""
        if self._fd is None or self._holder is None:
            return
        holder = Holder(
            run_id, self._holder.host, self._holder.pid, self._holder.since, self._holder.scope
        )
        with self._registry():  # readers hold the registry too: never a half-written file
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, _holder_json(holder), 0)
        self._holder = holder

    def release(self) -> None:
        if self._fd is None:
            return
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
        os.close(self._fd)
        self._fd = self._path = self._holder = None


def wait_for_delivery_lock(
    try_once: Callable[[], list[Holder]], where: str, wait: float | None
) -> None:
    """Call ``try_once`` (which takes the lock and returns [], or returns the holders in
    the way) until it succeeds; ``RunLocked`` naming ``where`` and the holders at once
    (``wait`` 0), after ``wait`` seconds, or never (``None``). Both ledgers wait so."""
    started = time.monotonic()
    logged = 0.0
    while True:
        conflicts = try_once()
        if not conflicts:
            return
        waited = time.monotonic() - started
        others = "; ".join(h.describe() for h in conflicts)
        if wait is not None and waited >= wait:
            waited_text = f" (waited {waited:.0f} s)" if wait else ""
            raise RunLocked(
                f"{where}: another run is delivering from this ledger"
                f"{waited_text}: {others}; run again when it ends, or add --wait"
            )
        if logged == 0.0 or time.monotonic() - logged >= WAIT_LOG_EVERY:
            log.info("Waiting for the delivery lock (%.0f s so far): %s", waited, others)
            logged = time.monotonic()
        time.sleep(_POLL)
