"""The run's gate in front of the partner: at most ``AimdController.allowed()`` requests in
flight, and every answer fed back to the controller (``adapters/pacing.py``).

One gate per delivery, shared by all its batches; it counts HTTP attempts (a POST or PUT
each), not batches: a batch that sleeps before a retry holds no place in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from customer_sync.adapters.pacing import AimdController

THROTTLED = 429


@dataclass
class _Request:
    window: int
    started: float
    status: int | None = None


class RequestGate:
    """``async with gate.request() as sent: ...; sent.status = answer.status``."""

    def __init__(self, controller: AimdController) -> None:
        self.controller = controller
        self.in_flight = 0
        self.most_in_flight = 0
        self._waiting: list[asyncio.Future[None]] = []

    @classmethod
    def for_concurrency(cls, concurrency: int) -> RequestGate:
        """AIMD between 1 and ``concurrency`` requests in flight, starting at ``concurrency``."""
        return cls(AimdController(ceiling=concurrency))

    @asynccontextmanager
    async def request(self) -> AsyncIterator[_Request]:
        """A place for one request; set ``status`` on what is yielded once it is answered
        (left None: a transport failure, which does not move the limit)."""
        controller = self.controller
        while self.in_flight >= controller.allowed():
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
        self.in_flight += 1  # one event loop: no lock needed between the check and this
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        sent = _Request(controller.window, time.monotonic())
        try:
            yield sent
        finally:
            if sent.status == THROTTLED:
                controller.throttled_in(sent.window)
            elif sent.status is not None:
                controller.answered(time.monotonic() - sent.started)
            self.in_flight -= 1
            self._wake()

    def _wake(self) -> None:
        """Every waiter looks again (a few dozen at most: the run's concurrency); waking
        all of them means a cancelled waiter never swallows a place."""
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)
