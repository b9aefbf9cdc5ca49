"""The one request-envelope builder: ``{"customers":[d1,d2,...]}``, however it is fed.

``request_body`` (one copy, the pieces joined once) against its readable form, for plain
batches, split parts and the spool's memoryview slices.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import orjson
from hypothesis import given, settings

from customer_sync.schemas.records import Batch, request_body

_DOCUMENT = st.dictionaries(
    st.text(max_size=5), st.integers(-(2**53), 2**53) | st.text(max_size=8), max_size=3
)


def _reference(documents: list[bytes]) -> bytes:
    return b'{"customers":[' + b",".join(documents) + b"]}"


@settings(max_examples=200, deadline=None)
@given(st.lists(_DOCUMENT, max_size=60))
def test_the_envelope_is_the_documents_in_a_customers_array(documents: list[dict]) -> None:
    serialised = [orjson.dumps(d) for d in documents]
    body = request_body(serialised)
    assert body == _reference(serialised) == orjson.dumps({"customers": documents})
    shared = memoryview(b"".join(serialised))
    offsets = [0]
    for doc in serialised:
        offsets.append(offsets[-1] + len(doc))
    slices = [shared[a:b] for a, b in itertools.pairwise(offsets)]
    assert request_body(slices) == body
    ids = tuple(str(i) for i in range(len(serialised)))
    assert Batch("b", "POST", ids, tuple(serialised)).body == body
