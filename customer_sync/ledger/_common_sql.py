"""The ledger statements both dialects write alike (no parameters, or the same clause);
``_sqlite_sql`` and ``_postgres_sql`` take these, and differ only where the SQL does."""

from __future__ import annotations

from typing import Final

ACKNOWLEDGED_IDS: Final = "SELECT source_customer_id FROM acknowledged"
DEAD_LETTER_IDS: Final = "SELECT source_customer_id FROM dead_letters"
FORGET_KEPT_DOCUMENTS: Final = "DELETE FROM kept_documents"
KNOWN_CUSTOMERS: Final = "SELECT count(*) FROM acknowledged"
RUNNING_RUNS: Final = "SELECT run_id FROM runs WHERE status = 'running'"
SENDING_OF_FINISHED_RUNS: Final = (
    "SELECT DISTINCT run_id FROM batches WHERE state = 'sending' "
    "AND run_id IN (SELECT run_id FROM runs WHERE status != 'running')"
)
DEAD_LETTER_ON_CONFLICT: Final = (
    "ON CONFLICT (source_customer_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
    "method = excluded.method, document = excluded.document, kind = excluded.kind, "
    "http_status = excluded.http_status, request_id = excluded.request_id, "
    "answer = excluded.answer, last_failed_at = excluded.last_failed_at, "
    "failures = dead_letters.failures + 1, run_id = excluded.run_id, "
    "batch_id = excluded.batch_id"
)
"""A new failure of a customer already dead-lettered: the latest failure, counted."""
