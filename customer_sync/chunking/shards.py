"""Shards: one extract delivered by several runs at once, each owning a share of the chunks.

``--shard 2/3`` makes a run prepare and deliver only the chunks ``p`` with
``p % 3 == 1`` (chunks are buckets of a hash of the customer id, so shares are even and
a customer is in the same shard in every run of the same extract and chunk size). Every
shard reads the whole files (the split needs them), then validates, nests, plans and
sends only its own chunks. Whole customer trees stay together: a joint account goes to
the chunk of each of its holders, whatever shard that is. Each row of the extract is
checked by the one shard that owns its chunk, so rejects and counts of all shards add up
to those of one run. The shards share one ledger (SQLite on one machine; the Ledger
protocol allows a shared database across machines) and run in parallel as separate
Prefect flow runs (one deployment run per shard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from customer_sync.schemas.errors import ConfigError

_SHAPE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``number`` (1-based) of ``count``."""

    number: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.number <= self.count:
            raise ConfigError(f"shard must be N/M with 1 <= N <= M, not {self.number}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/3"`` -> the second of three shards."""
        match = _SHAPE.match(text)
        if match is None:
            raise ConfigError(f"shard must be written N/M (e.g. 1/2), not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def owns(self, partition: int) -> bool:
        return partition % self.count == self.number - 1

    def partitions(self, total: int) -> list[int]:
        """This shard's chunks among ``total``."""
        return [p for p in range(total) if self.owns(p)]

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"
