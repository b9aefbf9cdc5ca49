"""Records passed between the stages of the pipeline.

Frames travel inside these small frozen dataclasses so every stage names what it takes
and returns. None of them hold open resources, so they pickle and print cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import pandas as pd

Method = Literal["POST", "PUT"]
BatchStatus = Literal["acknowledged", "rejected", "failed"]


BODY_PREFIX: Final = b'{"customers":['
BODY_SUFFIX: Final = b"]}"


def request_body(documents: Sequence[bytes | memoryview]) -> bytes:
    """The request body ``{"customers":[d1,d2,...]}`` of serialised documents, in one copy.

    The one builder of the partner's envelope: a batch, a split part of one, a spooled
    batch and the stand-in partner's own re-sends all go through it.
    """
    if not documents:
        return BODY_PREFIX + BODY_SUFFIX
    pieces: list[bytes | memoryview] = [b","] * (2 * len(documents) + 1)
    pieces[0], pieces[-1] = BODY_PREFIX, BODY_SUFFIX
    pieces[1:-1:2] = documents  # d1 , d2 , ... dn between the brackets
    return b"".join(pieces)


@dataclass(frozen=True)
class Extract:
    """The three flat tables as read: every column text, plus ``_row`` (1-based data row).

    ``files`` maps a table name to the file (or URL) it came from, for messages.
    ``ignored_columns`` maps a table name to extra columns that were reported and dropped.
    """

    customers: pd.DataFrame
    accounts: pd.DataFrame
    cards: pd.DataFrame
    files: dict[str, str]
    ignored_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame:
        frame: pd.DataFrame = getattr(self, name)
        return frame

    @property
    def rows_read(self) -> dict[str, int]:
        return {name: len(self.table(name)) for name in ("customers", "accounts", "cards")}

    def __repr__(self) -> str:
        # counts and files only: the frames hold postal codes and card numbers
        rows = ", ".join(f"{name} {count:,}" for name, count in self.rows_read.items())
        return f"Extract({rows}; from {', '.join(sorted(set(self.files.values()))) or '-'})"


@dataclass(frozen=True)
class Batch:
    """One request's worth of customers: at most 50 documents, each already serialised.

    ``documents[i]`` is the JSON of the customer ``customer_ids[i]``; ``body`` joins them
    into the exact request body ``{"customers": [...]}``.
    """

    batch_id: str
    method: Method
    customer_ids: tuple[str, ...]
    documents: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return request_body(self.documents)


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one batch after its retries (and after splitting on a 400)."""

    batch_id: str
    method: Method
    customer_ids: tuple[str, ...]
    status: BatchStatus
    attempts: int
    http_status: int | None
    request_id: str | None
    """The partner's requestId for the last attempt (acknowledged or not)."""
    error: str | None = None
    """The partner's answer or the transport error, for failed and rejected batches."""
    rejected: dict[str, str] = field(default_factory=dict)
    """sourceCustomerId -> partner's validation errors, for customers isolated by a split."""
