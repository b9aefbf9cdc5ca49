"""A real PostgreSQL server for the tests, started by the test run itself.

No root, no Docker: the machine's own PostgreSQL binaries (``pg_config --bindir``,
``/usr/lib/postgresql/*/bin`` or ``PATH``) run a throwaway cluster in a temp folder,
listening on 127.0.0.1 on a free port with its unix socket in that folder. ``initdb`` and
``postgres`` refuse to run as root, so under uid 0 they run as the unprivileged
``postgres`` user (through ``setpriv``, which execs: the pid we hold is the server's own),
with the folder handed to that user. ``fsync=off``: a test cluster need not survive a
power cut, and this is what keeps a fresh database per test cheap.

When no binaries are found the fixture fails with a message saying so, never skips: the
ledger's PostgreSQL tests must run in CI.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

_SERVICE_USER = "postgres"  # Debian's package creates it; the server runs as it under root
_START_TIMEOUT = 60.0


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def postgres_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``, newest version first."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
        candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in versions]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresNotFound(
        "customer-sync tests: no PostgreSQL server binaries (initdb, postgres) found via "
        "pg_config --bindir, /usr/lib/postgresql/*/bin or PATH; install Debian's "
        "postgresql package (apt-get install postgresql) to run the PostgreSQL ledger tests"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: ``start()``, then ``database()`` per test, then ``stop()``."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or postgres_bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="customer-sync-pg-"))
        self.data = self.folder / "data"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._as_user: list[str] = []
        if os.getuid() == 0:
            user = pwd.getpwnam(_SERVICE_USER)
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as_user = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                "--",
            ]
        os.chmod(self.folder, 0o700)

    # --- life ---------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                "--auth",
                "trust",  # loopback and the private socket only: see start's listen settings
                "--encoding",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        for _attempt in range(5):  # the free port may be taken between probe and bind
            self.port = _free_port()
            log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - the server's log
            self._process = subprocess.Popen(
                [
                    *self._as_user,
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.folder}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches pytest, whose teardown stops it
            )
            log.close()
            if self._wait_ready():
                atexit.register(self.close)  # a session that dies leaves no server behind
                return self
            self.stop()
        raise RuntimeError(f"PostgreSQL did not start; see {self.folder / 'server.log'}")

    def _run(self, command: Sequence[str]) -> None:
        done = subprocess.run(
            [*self._as_user, *command], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are disconnected, not waited for)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- use ----------------------------------------------------------------------------
    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database (from template0: no copy of anything); its URL."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a test's database, ending whatever sessions it left open."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
