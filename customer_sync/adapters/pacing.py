"""How many requests this run may have in flight to the partner: additive increase,
multiplicative decrease (AIMD) on the partner's 429s.

Pure: no asyncio, no clock. ``adapters/request_gate.py`` holds requests back to
``allowed()`` and feeds the answers in.

* A **429** halves the limit (``decrease``), at most once per *window*: the 429s of
  requests that were sent before the last decrease are the same push-back seen late, so
  each request carries the ``window`` it was sent in and only a 429 of the current window
  lowers the limit again (as TCP lowers its window once per round trip).
* A **fast answer** (any answer that is not a 429, in at most ``slow_factor`` times the
  fastest answer seen) raises the limit by ``increase / limit``: about ``increase`` per
  window of answers, so the limit climbs back linearly once the partner has room.
* Slow answers (a partner that queues) and transport failures leave the limit alone; the
  per-batch retries and ``Retry-After`` (adapters/delivery.py) still decide *when* a
  request is re-sent: the controller only decides how many may be out at once.

The limit stays within ``floor`` (1: a run always makes progress) and ``ceiling`` (the
run's ``--concurrency``, or its share of the partner budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class AimdController:
    """The requests allowed in flight, moved by the partner's answers."""

    ceiling: int
    """Never more than this (the run's concurrency)."""
    floor: int = 1
    decrease: float = 0.5
    """The limit is multiplied by this on a 429 of the current window."""
    increase: float = 1.0
    """Added to the limit over one window of fast answers (``increase / limit`` each)."""
    slow_factor: float = 3.0
    """An answer slower than this many times the fastest seen does not raise the limit."""
    limit: float = field(default=0.0)
    """The current limit (fractional: it climbs by fractions of a request)."""
    window: int = 0
    """Counts the decreases; a request remembers the window it was sent in."""
    fastest: float | None = None
    """The fastest answer seen, in seconds (the partner's latency with room to spare)."""
    throttled: int = 0
    """429s seen (all of them, also those that did not lower the limit)."""

    def __post_init__(self) -> None:
        if self.ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        if not 1 <= self.floor <= self.ceiling:
            raise ValueError("floor must be within 1..ceiling")
        if not 0.0 < self.decrease < 1.0:
            raise ValueError("decrease must be within 0..1 (exclusive)")
        if self.increase <= 0 or self.slow_factor < 1.0:
            raise ValueError("increase must be positive and slow_factor at least 1")
        if not self.limit:
            self.limit = float(self.ceiling)  # start where a fixed concurrency would be
        self.limit = min(float(self.ceiling), max(float(self.floor), self.limit))

    def allowed(self) -> int:
        """Requests that may be in flight now."""
        return max(self.floor, min(self.ceiling, math.floor(self.limit + 1e-9)))

    def throttled_in(self, window: int) -> None:
        """A 429 answered a request sent in ``window``."""
        self.throttled += 1
        if window < self.window:
            return  # sent before the last decrease: already acted upon
        self.limit = max(float(self.floor), self.limit * self.decrease)
        self.window += 1

    def answered(self, seconds: float) -> None:
        """An answer other than a 429 arrived ``seconds`` after its request left."""
        if self.fastest is None or seconds < self.fastest:
            self.fastest = seconds
        if seconds <= self.slow_factor * max(self.fastest, 1e-3):
            self.limit = min(float(self.ceiling), self.limit + self.increase / self.limit)
