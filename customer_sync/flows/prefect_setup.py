"""Prefect's settings for customer-sync, and starting its temporary API server early.

Prefect reads its settings from the environment once, when ``prefect`` is first imported, so
``configure_prefect()`` must run before that. Importing this module imports no Prefect and
changes nothing; the CLI entry point calls ``configure_prefect()`` (and, for the commands
that run a flow, ``start_prefect_server()``). A notebook calls
``configure_prefect()`` in its first cell, before ``from flows.sync import sync_customers``.

Why the temporary server is started early: with no ``PREFECT_API_URL``, the first flow run
starts Prefect's ephemeral API server (a uvicorn subprocess) and waits for it. That
subprocess imports Prefect's server and, on an empty ``PREFECT_HOME``, creates and migrates
its SQLite database: 6 s on a warm home, 27 s measured on a loaded 2-core machine with an
empty one. Started as a subprocess at CLI entry (before this process imports anything
heavy), it comes up on the other core while this process imports pandas and Prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from customer_sync.schemas.errors import CustomerSyncError
from customer_sync.settings import STARTUP_TIMEOUT_ENV, Settings

STARTUP_TIMEOUT_VARIABLE: Final = STARTUP_TIMEOUT_ENV
STARTUP_TIMEOUT_SECONDS: Final = 180
"""Our default wait for the temporary server (Prefect's own is 20 s): enough for a first
migration of a new database on a loaded machine. A value the user set is kept."""

_OUR_DEFAULTS: Final = {
    # Our modules log through the standard logging tree; Prefect attaches these loggers
    # to the run's log.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "customer_sync",
    # Analytics off avoids a "database is locked" seen on a fresh PREFECT_HOME.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    STARTUP_TIMEOUT_VARIABLE: str(STARTUP_TIMEOUT_SECONDS),
}


class PrefectServerError(CustomerSyncError):
    """Prefect's temporary API server could not be started (exit status 2)."""


def configure_prefect() -> None:
    """Put our Prefect defaults into the environment, keeping any the user set.

    Call before ``prefect`` is imported; later, Prefect has read its settings already.
    """
    for name, value in _OUR_DEFAULTS.items():
        os.environ.setdefault(name, value)


_HEALTH_POLL_SECONDS: Final = 0.1
_PORTS: Final = range(8000, 9000)  # Prefect's own range for the temporary server


@dataclass
class _ServerStart:
    """The temporary server's subprocess, started at CLI entry, before any heavy import."""

    port: int
    process: subprocess.Popen[bytes]
    output: Path
    """An owner-only file with the server's output until it answers: a server that fails
    prints a traceback, which the user sees only if they open it (named in the error)."""
    ready: bool = False


_started: _ServerStart | None = None


def _settings_elsewhere() -> bool:
    """True when Prefect may take an API URL (or server settings) from somewhere other
    than the environment: the active profile, a .env, prefect.toml or [tool.prefect] in
    pyproject.toml of the working folder. We then leave the server to Prefect: pointing
    the run at a temporary server would override where the user sends it."""
    settings = Settings.from_environment()
    home = Path(settings.prefect_home or Path.home() / ".prefect").expanduser()
    profiles = Path(settings.prefect_profiles_path or home / "profiles.toml")
    try:
        chosen = tomllib.loads(profiles.read_text()) if profiles.is_file() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return True
    active = settings.prefect_profile or chosen.get("active", "ephemeral")
    profile = chosen.get("profiles", {}).get(active, {})
    if not isinstance(profile, dict) or "PREFECT_API_URL" in profile:
        return True
    if active != "ephemeral" and profile:  # a profile of the user's own: theirs to run
        return True
    cwd = Path.cwd()
    try:
        if (cwd / "prefect.toml").is_file():
            return True
        if (cwd / ".env").is_file() and "PREFECT_" in (cwd / ".env").read_text():
            return True
        pyproject = cwd / "pyproject.toml"
        return pyproject.is_file() and "[tool.prefect" in pyproject.read_text()
    except (OSError, UnicodeDecodeError):
        return True


def needs_temporary_server() -> bool:
    """True when a flow run here would start Prefect's temporary server: no API URL set,
    in the environment or anywhere else Prefect reads its settings from."""
    settings = Settings.from_environment()
    if settings.prefect_api_url or _settings_elsewhere():
        return False
    return settings.prefect_ephemeral.strip().lower() not in ("0", "false", "no", "off")


def _free_port() -> int:
    for _ in range(20):
        port = random.choice(_PORTS)
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise PrefectServerError("Prefect: no free port in 8000-8999 for its temporary API server")


def _launch(port: int, output: Path) -> subprocess.Popen[bytes]:
    """The command line of Prefect's own ``SubprocessASGIServer`` (prefect 3.9), started
    without importing Prefect: its settings reach the subprocess through the environment
    (and the same profile), as they reach this process."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise PrefectServerError("Prefect: the prefect package is not installed")
    app_dir = Path(next(iter(spec.submodule_search_locations))).parent
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    with output.open("ab") as sink:
        return subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )


def start_prefect_server() -> None:
    """Start Prefect's temporary API server now (once), if a flow run would need it, so it
    comes up on the other core while this process imports and reads.
    ``wait_for_prefect_server()`` waits for it and hands it to Prefect."""
    global _started
    configure_prefect()
    # Once Prefect is imported (a test harness, a notebook, a caller's own settings) it has
    # read its settings: it runs its own server, or the one it was given.
    if _started is None and "prefect" not in sys.modules and needs_temporary_server():
        port = _free_port()
        descriptor, name = tempfile.mkstemp(prefix="customer-sync-prefect-server-", suffix=".log")
        os.close(descriptor)  # mkstemp makes it owner-only (0600)
        output = Path(name)
        _started = _ServerStart(port, _launch(port, output), output)
        # Prefect, imported later, talks to it as to any server by its URL: it then never
        # imports its own server code in this process (5-15 s of imports saved).
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        atexit.register(_stop_at_exit)


def _stop_at_exit() -> None:
    """Stop our server when this process ends (as Prefect stops its own): also when the
    command failed before its flow started."""
    global _started
    if _started is not None:
        _stop(_started.process)
        _started.output.unlink(missing_ok=True)
        _started = None


def _healthy(port: int) -> bool:
    # No proxy: the server is on loopback, whatever HTTP_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):
        return False


def _startup_timeout() -> float:
    try:
        return float(Settings.from_environment().prefect_startup_timeout or STARTUP_TIMEOUT_SECONDS)
    except ValueError:
        return float(STARTUP_TIMEOUT_SECONDS)


def _failed(problem: str) -> PrefectServerError:
    home = Settings.from_environment().prefect_home or "~/.prefect"
    return PrefectServerError(
        f"PREFECT_HOME {home}: Prefect's temporary API server {problem}; or set "
        "PREFECT_API_URL to a running Prefect server"
    )


def wait_for_prefect_server() -> None:
    """Wait until the server ``start_prefect_server()`` started answers (the flow must not
    start before: its first requests would find nobody listening). A one-line
    ``PrefectServerError`` if it does not come up: it exited, or did not answer within the
    start-up timeout (wall clock)."""
    global _started
    started = _started
    if started is None or started.ready:
        return
    deadline = time.monotonic() + _startup_timeout()
    while not _healthy(started.port):
        status = started.process.poll()
        if status is not None:  # (3 is also a port taken between our check and its bind)
            _started = None
            raise _failed(
                f"exited with status {status} before it answered: see its output in "
                f"{started.output}"
            )
        elif time.monotonic() > deadline:
            _stop(started.process)
            _started = None
            raise _failed(
                f"did not answer within {_startup_timeout():g} s (its output: "
                f"{started.output}): raise {STARTUP_TIMEOUT_VARIABLE}"
            )
        time.sleep(_HEALTH_POLL_SECONDS)
    # it answers: its output so far is of no interest (the file stays open to it; gone
    # from the folder); it is stopped when this process exits
    started.output.unlink(missing_ok=True)
    started.ready = True


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
