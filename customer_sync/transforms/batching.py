"""Cutting serialised customer documents into request-sized batches (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from customer_sync.schemas.contract import MAX_CUSTOMERS_PER_REQUEST
from customer_sync.schemas.records import Batch, Method


def make_batches(
    customer_ids: Sequence[str],
    documents: Sequence[bytes],
    method: Method,
    batch_size: int = MAX_CUSTOMERS_PER_REQUEST,
    *,
    id_prefix: str,
) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` customers, every customer once, input order kept.

    ``documents[i]`` is the JSON of ``customer_ids[i]``. Batch ids are
    ``{id_prefix}-{n:06d}`` (n from 1), so a run's batches sort in sending order. The
    arguments are checked at once (not when the first batch is taken).
    """
    if not 1 <= batch_size <= MAX_CUSTOMERS_PER_REQUEST:
        raise ValueError(
            f"batch size must be between 1 and {MAX_CUSTOMERS_PER_REQUEST} "
            f"(the partner's limit per request), not {batch_size}"
        )
    if len(customer_ids) != len(documents):
        raise ValueError(
            f"{len(customer_ids)} customer ids but {len(documents)} documents; "
            "they must pair up one to one"
        )
    if len(set(customer_ids)) != len(customer_ids):
        raise ValueError("customer ids repeat: each customer must be sent once per run")
    if not id_prefix:
        raise ValueError("id_prefix must not be empty (it makes batch ids unique per run)")
    return _batches(customer_ids, documents, method, batch_size, id_prefix)


def _batches(
    customer_ids: Sequence[str],
    documents: Sequence[bytes],
    method: Method,
    batch_size: int,
    id_prefix: str,
) -> Iterator[Batch]:
    for number, start in enumerate(range(0, len(customer_ids), batch_size), start=1):
        stop = start + batch_size
        yield Batch(
            batch_id=f"{id_prefix}-{number:06d}",
            method=method,
            customer_ids=tuple(customer_ids[start:stop]),
            documents=tuple(documents[start:stop]),
        )
