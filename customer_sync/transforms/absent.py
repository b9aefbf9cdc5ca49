"""Who disappeared: customers the partner holds that tonight's extract no longer has.

The partner has no delete endpoint, so a customer that leaves the bank's extract stays at
the partner silently. Pure: ids in, ids out (no ledger, no files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from customer_sync.chunking.id_hash import id_hashes, partitions_of, stripped_ids


def absent_customers(
    known_ids: Sequence[str] | pa.Array, seen_ids: Iterable[Sequence[str] | pa.Array]
) -> list[str]:
    """The known ids that are in none of ``seen_ids`` (every id read, valid or held
    back, chunk by chunk), sorted."""
    known = (
        pa.array(known_ids, type=pa.large_string())
        if not isinstance(known_ids, pa.Array)
        else known_ids
    )
    parts = [
        (s if isinstance(s, pa.Array) else pa.array(s, type=pa.large_string())).cast(
            pa.large_string()
        )
        for s in seen_ids
    ]
    seen = pa.concat_arrays(parts) if parts else pa.array([], type=pa.large_string())
    present = pc.is_in(known.cast(pa.large_string()), value_set=seen.drop_null())
    absent = pc.filter(known, pc.invert(present))
    return sorted(str(v) for v in absent.to_pylist())


def ids_of_partitions(ids: Sequence[str], partitions: int, owned: Sequence[int]) -> list[str]:
    """The ids whose chunk (``chunking.routing``'s hash bucket) is among ``owned``: the
    known customers a shard can judge."""
    if not ids:
        return []
    array = pa.array(ids, type=pa.large_string())
    parts = partitions_of(id_hashes(stripped_ids(array)), partitions)
    keep = np.isin(parts, np.asarray(list(owned), dtype=np.int64))
    return [ids[int(i)] for i in np.flatnonzero(keep)]
