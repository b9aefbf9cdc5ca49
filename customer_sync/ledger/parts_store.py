"""The ledger's calls for document parts and kept documents (``ledger/parts.py``,
``transforms/changes.py``), shared by both stores: a part of ``LedgerStore``, which
provides the connection, its lock, the writer and the backend's statements."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

from customer_sync.ledger._writer import GroupWriter
from customer_sync.ledger.records import to_json


class DocumentPartsStore:
    """Document parts and kept documents, over ``LedgerStore``'s connection."""

    SQL: ClassVar[ModuleType]
    ID_CHUNK: ClassVar[int]
    _db: Any
    _lock: threading.RLock
    _writer: GroupWriter[Any]

    def _write(self, writes: int = 1) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _executemany(self, db: Any, statement: str, rows: list[tuple[object, ...]]) -> None:
        raise NotImplementedError

    def _pairs_among(self, statement: str, fingerprints: Mapping[str, str]) -> list[Any]:
        """``statement`` over {id: fingerprint}, ``ID_CHUNK`` pairs at a time."""
        items = list(fingerprints.items())
        rows: list[Any] = []
        with self._lock:
            for start in range(0, len(items), self.ID_CHUNK):
                pairs = to_json(dict(items[start : start + self.ID_CHUNK]))
                rows.extend(self._db.execute(statement, (pairs,)).fetchall())
        return rows

    def document_parts(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]:
        """sourceCustomerId -> the kept parts of its document of that fingerprint."""
        rows = self._pairs_among(self.SQL.DOCUMENT_PARTS, fingerprints)
        return {cid: bytes(parts) for cid, parts in rows}

    def customers_with_parts(self, fingerprints: Mapping[str, str]) -> set[str]:
        """The customers whose document of that fingerprint has its parts kept."""
        return {row[0] for row in self._pairs_among(self.SQL.CUSTOMERS_WITH_PARTS, fingerprints)}

    def record_document_parts(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep (sourceCustomerId, fingerprint, parts); per customer only this fingerprint's
        and the acknowledged one's parts stay. One transaction."""
        if not rows:
            return
        latest = to_json({cid: fp for cid, fp, _ in rows})
        self._writer.drain()
        with self._write() as db:
            db.execute(self.SQL.PRUNE_PARTS, (latest,))
            self._executemany(db, self.SQL.RECORD_PARTS, list(rows))

    def kept_documents(self, fingerprints: Mapping[str, str]) -> dict[str, bytes]:
        """sourceCustomerId -> its kept document of that fingerprint (card data; only with
        the enrollment-ended action on)."""
        rows = self._pairs_among(self.SQL.KEPT_DOCUMENTS, fingerprints)
        return {cid: bytes(document) for cid, document in rows}

    def customers_with_kept_documents(self, fingerprints: Mapping[str, str]) -> set[str]:
        """The customers whose document of that fingerprint is kept."""
        rows = self._pairs_among(self.SQL.CUSTOMERS_WITH_KEPT_DOCUMENTS, fingerprints)
        return {row[0] for row in rows}

    def keep_documents(self, rows: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep (sourceCustomerId, fingerprint, document), pruned as the parts are."""
        if not rows:
            return
        latest = to_json({cid: fp for cid, fp, _ in rows})
        self._writer.drain()
        with self._write() as db:
            db.execute(self.SQL.PRUNE_KEPT_DOCUMENTS, (latest,))
            self._executemany(db, self.SQL.KEEP_DOCUMENT, list(rows))

    def forget_kept_documents(self) -> int:
        """Delete every kept document (a run without the enrollment-ended action); how many."""
        self._writer.drain()
        with self._write() as db:
            return int(db.execute(self.SQL.FORGET_KEPT_DOCUMENTS).rowcount)
