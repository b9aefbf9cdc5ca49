"""The stand-in partner server: the contract of docs/partner-contract.md, strictly, on loopback.

Tests, the demo and the benchmarks talk to it over real HTTP on 127.0.0.1. It validates every
request body with ``schemas.document.CustomersRequest`` (switch off with ``validate=False``
for raw throughput), records what it accepted, and injects faults on request
(``StubFaults``).

Three ways to run it:

* ``async with run_stub_server(faults) as stub:`` inside a running event loop;
* ``with serve_stub_in_thread(faults) as stub:`` from synchronous code (own loop, own thread);
* ``customer-sync stub-api`` in another process; ``serve_stub_in_subprocess`` wraps that
  and reads the bound URL back.

The stand-in is split by responsibility: ``stub_partner.py`` (the application, sessions,
auth), ``stub_customers.py`` (the data endpoint), ``stub_answers.py`` (answer shapes),
``stub_faults.py`` (faults and their flags), ``stub_records.py`` (what it records); this
module runs it.

DECISION (the partner's pages are silent): a 400 means nothing in the request was accepted;
``validationErrors`` items are objects ``{customerIndex, sourceCustomerId, field, message}``
(the index into the request's ``customers``; null for errors about the whole body).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from customer_sync.devtools.stub_faults import StubFaults as StubFaults
from customer_sync.devtools.stub_faults import fault_arguments as fault_arguments
from customer_sync.devtools.stub_faults import faults_from_args as faults_from_args
from customer_sync.devtools.stub_partner import StubPartner as StubPartner
from customer_sync.devtools.stub_records import EXPIRE_TOKENS_PATH, STATS_PATH

logger = logging.getLogger(__name__)


# --- running it ----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def run_stub_server(
    faults: StubFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> AsyncIterator[StubPartner]:
    """Serve a ``StubPartner`` in the running loop; ``options`` go to ``StubPartner``."""
    stub = StubPartner(faults, **options)
    await stub.start(host, port)
    try:
        yield stub
    finally:
        await stub.stop()


@contextlib.contextmanager
def serve_stub_in_thread(
    faults: StubFaults | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> Iterator[StubPartner]:
    """Serve a ``StubPartner`` from a background thread with its own event loop."""
    stub = StubPartner(faults, **options)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()

    async def serve() -> None:
        try:
            await stub.start(host, port)
        except BaseException as error:
            failure.append(error)
            ready.set()
            return
        ready.set()
        try:
            await stopped.wait()
        finally:
            await stub.stop()

    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(),), name="stub-partner", daemon=True
    )
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield stub
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        loop.close()


@dataclass(frozen=True)
class RemoteStub:
    """A stand-in server running in another process: its URL and its admin endpoints."""

    url: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + STATS_PATH, timeout=10) as answer:  # noqa: S310
            result: dict[str, Any] = json.load(answer)
        return result

    def expire_tokens(self) -> None:
        request = urllib.request.Request(self.url + EXPIRE_TOKENS_PATH, method="POST")  # noqa: S310
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


@contextlib.contextmanager
def serve_stub_in_subprocess(
    faults: StubFaults | None = None,
    *,
    port: int = 0,
    validate: bool = True,
    keep_documents: bool = False,
    startup_timeout: float = 30.0,
) -> Iterator[RemoteStub]:
    """Run the stand-in server in its own process (no GIL shared with the client): the
    ``customer-sync stub-api`` command, whose options are the one declaration of them."""
    command = [sys.executable, "-m", "customer_sync.cli.app", "stub-api", f"--port={port}"]
    command += fault_arguments(faults or StubFaults())
    command += [] if validate else ["--no-validate"]
    command += ["--keep-documents"] if keep_documents else []
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE)
    try:
        line = _read_line(process, startup_timeout).decode()
        announced = re.search(r"\bon (http://\S+)", line)
        if announced is None:
            raise RuntimeError(f"the stand-in server said {line!r}, not where it listens")
        yield RemoteStub(announced.group(1), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError(f"the stand-in server did not start (exit status {process.poll()})")
    return result[0]


async def serve_until_stopped(
    stub: StubPartner, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Serve until SIGINT or SIGTERM."""
    await stub.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    announce(stub.url)
    try:
        await stop.wait()
    finally:
        await stub.stop()
