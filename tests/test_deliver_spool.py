"""Cutting the spool into batches (customer_sync.run.spool_batches) and sizing the task runs."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from customer_sync.adapters.spool import SpoolWriter
from customer_sync.flows.deliver import _DocumentsById, task_run_size
from customer_sync.run.spool_batches import SpoolDocuments, planned_batches, spool_batch_count
from customer_sync.schemas.errors import CustomerSyncError
from customer_sync.transforms.batching import make_batches


def _write(path: Path, chunks: list[list[tuple[str, str]]]) -> dict[str, bytes]:
    """A spool of (customer id, method) chunks; documents of varied length and UTF-8."""
    documents: dict[str, bytes] = {}
    with SpoolWriter(path) as spool:
        for chunk in chunks:
            ids = [cid for cid, _ in chunk]
            for cid in ids:
                documents[cid] = orjson.dumps({"sourceCustomerId": cid, "n": "é" * (len(cid) % 7)})
            spool.write(
                ids, [m for _, m in chunk], [f"fp-{c}" for c in ids], [documents[c] for c in ids]
            )
    return documents


def _chunks(seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    chunks: list[list[tuple[str, str]]] = []
    number = 0
    for index in range(5):
        size = rng.choice([0, 1, 49, 50, 51, 137])
        methods = [rng.choice(["POST", "PUT"]) for _ in range(size)]
        if index % 2:  # as preparation spools them: POSTs, then PUTs
            methods.sort()
        chunks.append([(f"C{number + i:05d}", m) for i, m in enumerate(methods)])
        number += size
    return chunks


def _expected(chunks: list[list[tuple[str, str]]], documents: dict[str, bytes], size: int):
    """What make_batches cuts from the same rows, record batch by record batch."""
    for number, chunk in enumerate(c for c in chunks if c):
        for method in ("POST", "PUT"):
            ids = [cid for cid, m in chunk if m == method]
            if ids:
                prefix = f"run-{number:04d}-{method.lower()}"
                yield from make_batches(
                    ids, [documents[c] for c in ids], method, size, id_prefix=prefix
                )


@pytest.mark.parametrize("batch_size", [1, 7, 50])
@pytest.mark.parametrize("seed", [1, 2])
def test_batches_are_those_make_batches_cuts(tmp_path: Path, batch_size: int, seed: int) -> None:
    chunks = _chunks(seed)
    spool = tmp_path / "spool.arrow"
    documents = _write(spool, chunks)
    planned = list(planned_batches(spool, batch_size, "run"))
    expected = list(_expected(chunks, documents, batch_size))
    assert len(planned) == len(expected) == spool_batch_count(spool, batch_size)
    for got, want in zip(planned, expected, strict=True):
        batch = got.batch
        assert (batch.batch_id, batch.method, batch.customer_ids) == (
            want.batch_id,
            want.method,
            want.customer_ids,
        )
        assert batch.body == want.body  # byte for byte
        assert list(batch.documents) == list(want.documents)
        assert got.fingerprints == {cid: f"fp-{cid}" for cid in want.customer_ids}


def test_spool_documents_read_like_a_sequence(tmp_path: Path) -> None:
    spool = tmp_path / "spool.arrow"
    documents = _write(spool, [[(f"C{i}", "POST") for i in range(5)]])
    batch = next(planned_batches(spool, 50, "run")).batch
    docs = batch.documents
    assert isinstance(docs, SpoolDocuments)
    want = [documents[f"C{i}"] for i in range(5)]
    assert len(docs) == 5
    assert docs[0] == want[0]
    assert docs[-1] == want[-1]
    assert docs[1:3] == want[1:3]
    with pytest.raises(IndexError):
        docs[5]
    by_id = _DocumentsById(batch)
    assert by_id["C3"] == want[3]
    assert dict(by_id) == {f"C{i}": want[i] for i in range(5)}
    with pytest.raises(KeyError):
        by_id["nobody"]


def test_a_customer_twice_in_a_chunk_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool.arrow"
    _write(spool, [[("C1", "POST"), ("C2", "POST"), ("C1", "POST")]])
    with pytest.raises(CustomerSyncError, match="once"):
        list(planned_batches(spool, 50, "run"))


def test_batch_size_is_checked(tmp_path: Path) -> None:
    spool = tmp_path / "spool.arrow"
    _write(spool, [[("C1", "POST")]])
    with pytest.raises(ValueError, match="between 1 and 50"):
        list(planned_batches(spool, 51, "run"))


@pytest.mark.parametrize(
    ("batches", "size"),
    [(0, 100), (1, 100), (5_000, 100), (5_001, 101), (20_009, 401), (100_000, 1000), (10**7, 1000)],
)
def test_task_runs_grow_with_the_run_but_stay_few(batches: int, size: int) -> None:
    assert task_run_size(batches) == size
