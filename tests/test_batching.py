"""make_batches: at most 50 per batch, every customer exactly once, order kept."""

from __future__ import annotations

import orjson
import pytest

from customer_sync.transforms.batching import make_batches


def _inputs(count: int) -> tuple[list[str], list[bytes]]:
    ids = [f"C{n}" for n in range(count)]
    return ids, [orjson.dumps({"sourceCustomerId": c}) for c in ids]


@pytest.mark.parametrize(
    ("count", "batch_size", "sizes"),
    [
        (0, 50, []),
        (1, 50, [1]),
        (50, 50, [50]),
        (51, 50, [50, 1]),
        (120, 50, [50, 50, 20]),
        (120, 7, [7] * 17 + [1]),
        (3, 1, [1, 1, 1]),
    ],
)
def test_sizes_order_and_exactly_once(count: int, batch_size: int, sizes: list[int]) -> None:
    ids, documents = _inputs(count)
    result = list(make_batches(ids, documents, "POST", batch_size, id_prefix="r"))
    assert [len(b.customer_ids) for b in result] == sizes
    assert [c for b in result for c in b.customer_ids] == ids
    assert [d for b in result for d in b.documents] == documents
    assert len({b.batch_id for b in result}) == len(result)


def test_batch_ids_and_body() -> None:
    ids, documents = _inputs(3)
    first, second = make_batches(ids, documents, "PUT", 2, id_prefix="run-7-put")
    assert (first.batch_id, second.batch_id) == ("run-7-put-000001", "run-7-put-000002")
    assert first.method == "PUT"
    assert orjson.loads(first.body) == {
        "customers": [{"sourceCustomerId": "C0"}, {"sourceCustomerId": "C1"}]
    }


@pytest.mark.parametrize("batch_size", [0, -1, 51, 1000])
def test_batch_size_outside_1_to_50_is_refused_at_once(batch_size: int) -> None:
    ids, documents = _inputs(3)
    with pytest.raises(ValueError, match="batch size must be between 1 and 50"):
        make_batches(ids, documents, "POST", batch_size, id_prefix="r")


def test_ids_and_documents_must_pair_up() -> None:
    ids, documents = _inputs(3)
    with pytest.raises(ValueError, match="3 customer ids but 2 documents"):
        make_batches(ids, documents[:2], "POST", id_prefix="r")


def test_repeated_customer_is_refused() -> None:
    ids, documents = _inputs(2)
    with pytest.raises(ValueError, match="repeat"):
        make_batches([*ids, "C0"], [*documents, documents[0]], "POST", id_prefix="r")


def test_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="id_prefix"):
        make_batches([], [], "POST", id_prefix="")


def test_inputs_are_not_mutated_and_batches_are_lazy() -> None:
    ids, documents = _inputs(120)
    before = (list(ids), list(documents))
    iterator = make_batches(ids, documents, "POST", id_prefix="r")
    assert next(iterator).customer_ids == tuple(ids[:50])
    assert (ids, documents) == before
