"""The ledger's SQL: its schema, migrations and the statements its writes run.

The schema is versioned with ``PRAGMA user_version``: ``MIGRATIONS[n]`` takes a version-``n``
database to version ``n + 1``; a new ledger runs them all. Add a step, never edit one that
shipped. Statements are constants so SQLite's statement cache reuses the prepared forms.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from customer_sync.ledger._common_sql import ACKNOWLEDGED_IDS as ACKNOWLEDGED_IDS
from customer_sync.ledger._common_sql import DEAD_LETTER_IDS as DEAD_LETTER_IDS
from customer_sync.ledger._common_sql import DEAD_LETTER_ON_CONFLICT
from customer_sync.ledger._common_sql import FORGET_KEPT_DOCUMENTS as FORGET_KEPT_DOCUMENTS
from customer_sync.ledger._common_sql import KNOWN_CUSTOMERS as KNOWN_CUSTOMERS
from customer_sync.ledger._common_sql import RUNNING_RUNS as RUNNING_RUNS
from customer_sync.ledger._common_sql import SENDING_OF_FINISHED_RUNS as SENDING_OF_FINISHED_RUNS

_V1: Final = """
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,              -- UTC, ISO-8601 with Z
    finished_at TEXT,
    status      TEXT NOT NULL,              -- running, crashed, or finish_run's status
    parameters  TEXT NOT NULL,              -- JSON, secret-looking names redacted
    counts      TEXT,                       -- JSON, the run report's counts
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL
);

CREATE TABLE batches (
    batch_key    INTEGER PRIMARY KEY,       -- compact reference for acknowledged rows
    run_id       TEXT NOT NULL,
    batch_id     TEXT NOT NULL,
    method       TEXT NOT NULL CHECK (method IN ('POST', 'PUT')),
    customer_ids TEXT NOT NULL,             -- JSON array of sourceCustomerId
    customers    INTEGER NOT NULL,
    state        TEXT NOT NULL CHECK (state IN
                   ('sending', 'acknowledged', 'rejected', 'failed', 'interrupted')),
    attempts     INTEGER NOT NULL,
    http_status  INTEGER,
    request_id   TEXT,                      -- the partner's requestId of the last attempt
    request_ids  TEXT,                      -- JSON array: every attempt's, splits included
    error        TEXT,
    acknowledged INTEGER NOT NULL DEFAULT 0, -- customers, by what became of them
    rejected     INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    sent_at      TEXT NOT NULL,
    finished_at  TEXT,
    UNIQUE (run_id, batch_id)
);
CREATE INDEX batches_sending ON batches (run_id) WHERE state = 'sending';

-- one row per customer the partner has acknowledged: the fingerprint of the last
-- acknowledged document; when, how and by which request come from its batch
CREATE TABLE acknowledged (
    source_customer_id TEXT PRIMARY KEY,
    fingerprint        TEXT NOT NULL,
    batch_key          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    source_customer_id TEXT PRIMARY KEY,
    fingerprint        TEXT NOT NULL,
    method             TEXT NOT NULL CHECK (method IN ('POST', 'PUT')),
    document           BLOB NOT NULL,       -- the JSON sent; card data
    kind               TEXT NOT NULL CHECK (kind IN ('rejected', 'failed')),
    http_status        INTEGER,
    request_id         TEXT,
    answer             TEXT,                -- the partner's answer or the transport error
    first_failed_at    TEXT NOT NULL,
    last_failed_at     TEXT NOT NULL,
    failures           INTEGER NOT NULL,
    run_id             TEXT NOT NULL,
    batch_id           TEXT NOT NULL
);

-- for notebooks: each acknowledged customer with when, by which run/batch/requestId, how
CREATE VIEW customer_acknowledgements AS
SELECT a.source_customer_id, a.fingerprint, b.finished_at AS acknowledged_at,
       b.run_id, b.batch_id, b.request_id, b.method
FROM acknowledged AS a JOIN batches AS b ON b.batch_key = a.batch_key;
"""

# why a run ended as it did (run/outcome.py): the error, or the counts of an incomplete run
_V2: Final = """
ALTER TABLE runs ADD COLUMN reason TEXT;
"""

# every acknowledgement, not only the last: a customer's history of sends. Append-only
# (rows older than the retention setting are pruned, the current one always kept); the
# backfill gives a ledger written before this table its last acknowledgements. Indexed by
# batch: a customer's history finds its batches first (CUSTOMER_SENDS), pruning goes by batch.
_V3: Final = """
CREATE TABLE acknowledgements (
    source_customer_id TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    batch_key          INTEGER NOT NULL
);
CREATE INDEX acknowledgements_by_batch ON acknowledgements (batch_key, source_customer_id);
INSERT INTO acknowledgements (source_customer_id, fingerprint, batch_key)
SELECT source_customer_id, fingerprint, batch_key FROM acknowledged;
"""

# the non-sensitive parts of each document sent (``customer_sync/transforms/changes.py``),
# keyed by its fingerprint: the plan shows what changed since the acknowledged one. Rows are
# written when a run plans its documents; per customer only the acknowledged fingerprint's
# and the latest one's are kept (RECORD_PARTS prunes the others)
_V4: Final = """
CREATE TABLE document_parts (
    source_customer_id TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    parts              BLOB NOT NULL,   -- JSON, never postal codes or card numbers
    PRIMARY KEY (source_customer_id, fingerprint)
) WITHOUT ROWID;

-- only with --end-enrollment-of-absent (emptied by every run without it): the documents
-- themselves, card data, so that an absent customer's last acknowledged tree can be sent
-- again with its enrollment ended; kept and pruned as document_parts
CREATE TABLE kept_documents (
    source_customer_id TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    document           BLOB NOT NULL,   -- the JSON sent; card data
    PRIMARY KEY (source_customer_id, fingerprint)
) WITHOUT ROWID;
"""

MIGRATIONS: Final = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> None:
    """Bring ``db`` to ``SCHEMA_VERSION``, inside the caller's transaction.

    A database newer than this code is left alone (the caller refuses to use it).
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    for step in range(version, SCHEMA_VERSION):
        # executescript would COMMIT the caller's transaction; run statement by statement
        for statement in _statements(MIGRATIONS[step]):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {step + 1}")


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# --- statements ----------------------------------------------------------------------------
START_RUN: Final = (
    "INSERT INTO runs (run_id, started_at, status, parameters, host, pid) "
    "VALUES (?, ?, 'running', ?, ?, ?)"
)
FINISH_RUN: Final = (
    "UPDATE runs SET finished_at = ?, status = ?, counts = ?, reason = ? WHERE run_id = ?"
)
RUNS: Final = (
    "SELECT run_id, started_at, finished_at, status, parameters, counts, host, pid, reason "
    "FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?"
)
# one parameter holding a JSON array of ids: no temp table, no limit on bound variables
ACKNOWLEDGED_FINGERPRINTS: Final = (
    "SELECT a.source_customer_id, a.fingerprint FROM json_each(?) AS j "
    "JOIN acknowledged AS a ON a.source_customer_id = j.value"
)
# sent_at last: the writer binds the transaction's time (see customer_sync/ledger/_writer.py)
MARK_SENDING: Final = (
    "INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, state, attempts, "
    "sent_at) VALUES (?, ?, ?, ?, ?, 'sending', 0, ?) "
    "ON CONFLICT (run_id, batch_id) DO UPDATE SET state = 'sending', method = excluded.method, "
    "customer_ids = excluded.customer_ids, customers = excluded.customers, "
    "sent_at = excluded.sent_at, finished_at = NULL"
)
# an outcome updates the row its mark wrote: by the unique key, no INSERT attempted first
# and no customer_ids bound (the JSON of 50 ids); RECORD_BATCH only for a batch never marked
FINISH_BATCH: Final = (
    "UPDATE batches SET state = ?, attempts = ?, http_status = ?, request_id = ?, error = ?, "
    "request_ids = ?, acknowledged = ?, rejected = ?, failed = ?, finished_at = ? "
    "WHERE run_id = ? AND batch_id = ?"
)
RECORD_BATCH: Final = (
    "INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, state, attempts, "
    "http_status, request_id, error, request_ids, acknowledged, rejected, failed, sent_at, "
    "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, batch_id) DO UPDATE SET state = excluded.state, "
    "attempts = excluded.attempts, http_status = excluded.http_status, "
    "request_id = excluded.request_id, error = excluded.error, "
    "request_ids = excluded.request_ids, acknowledged = excluded.acknowledged, "
    "rejected = excluded.rejected, failed = excluded.failed, finished_at = excluded.finished_at"
)
# a batch's acknowledged customers as one JSON object {sourceCustomerId: fingerprint}: one
# statement (one step, the GIL released throughout) instead of one per customer; the
# batch's key comes from a constant subquery (evaluated once, no round trip of its own)
ACKNOWLEDGE: Final = (
    "INSERT INTO acknowledged (source_customer_id, fingerprint, batch_key) "
    "SELECT key, value, (SELECT batch_key FROM batches WHERE run_id = ? AND batch_id = ?) "
    "FROM json_each(?) WHERE true "
    "ON CONFLICT (source_customer_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
    "batch_key = excluded.batch_key"
)
# the same customers appended to the history of acknowledgements (same parameters)
RECORD_ACKNOWLEDGEMENTS: Final = (
    "INSERT INTO acknowledgements (source_customer_id, fingerprint, batch_key) "
    "SELECT key, value, (SELECT batch_key FROM batches WHERE run_id = ? AND batch_id = ?) "
    "FROM json_each(?)"
)
ANY_DEAD_LETTER: Final = "SELECT EXISTS (SELECT 1 FROM dead_letters)"
CLEAR_DEAD_LETTERS: Final = (
    "DELETE FROM dead_letters WHERE source_customer_id IN (SELECT key FROM json_each(?))"
)
# ?11 is the transaction's time (first and last failure of a new dead letter)
DEAD_LETTER: Final = (
    "INSERT INTO dead_letters (source_customer_id, fingerprint, method, document, kind, "  # noqa: S608 - a constant clause
    "http_status, request_id, answer, first_failed_at, last_failed_at, failures, run_id, "
    "batch_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?11, ?11, 1, ?9, ?10) "
    + DEAD_LETTER_ON_CONFLICT
)
SENDING_BATCHES: Final = (
    "SELECT run_id, batch_id, method, customer_ids, state, attempts, http_status, request_id, "
    "error, sent_at, finished_at FROM batches WHERE state = 'sending' "
    "AND run_id IN (SELECT value FROM json_each(?)) ORDER BY batch_key"
)
SETTLE_BATCH: Final = (
    "UPDATE batches SET state = 'interrupted', error = ?, finished_at = ? "
    "WHERE run_id = ? AND batch_id = ? AND state = 'sending'"
)
SETTLE_RUN: Final = "UPDATE runs SET status = 'crashed' WHERE run_id = ? AND status = 'running'"
_DEAD_LETTER_COLUMNS: Final = (
    "source_customer_id, fingerprint, method, document, kind, http_status, request_id, answer, "
    "first_failed_at, last_failed_at, failures, run_id, batch_id"
)
# keyset pages: memory stays flat however many customers failed
DEAD_LETTER_PAGE: Final = (
    f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE source_customer_id > ? "  # noqa: S608
    "ORDER BY source_customer_id LIMIT ?"
)
DEAD_LETTER_IDS_AMONG: Final = (
    "SELECT d.source_customer_id FROM json_each(?) AS j "
    "JOIN dead_letters AS d ON d.source_customer_id = j.value"
)

# --- the morning-after queries (customer_sync/ledger/queries.py) ---------------------------------
RUN_BY_ID: Final = (
    "SELECT run_id, started_at, finished_at, status, parameters, counts, host, pid, reason "
    "FROM runs WHERE run_id = ?"
)
BATCHES_OF_RUN: Final = (
    "SELECT run_id, batch_id, method, customer_ids, state, attempts, http_status, request_id, "
    "error, sent_at, finished_at FROM batches WHERE run_id = ? ORDER BY batch_key"
)
# instr() on the JSON text finds the few candidate batches fast (the id in quotes, as
# orjson writes it); json_each confirms the id is an element, not part of another one
CUSTOMER_SENDS: Final = (
    "SELECT b.batch_key, b.run_id, b.batch_id, b.method, b.state, b.http_status, "
    "b.request_id, b.sent_at, b.finished_at, a.fingerprint "
    "FROM batches AS b LEFT JOIN acknowledgements AS a "
    "ON a.batch_key = b.batch_key AND a.source_customer_id = ?1 "
    "WHERE instr(b.customer_ids, ?2) > 0 "
    "AND EXISTS (SELECT 1 FROM json_each(b.customer_ids) WHERE value = ?1) "
    "ORDER BY b.batch_key"
)
DEAD_LETTER_OF: Final = (
    "SELECT fingerprint, kind, http_status, request_id, answer, run_id, batch_id "
    "FROM dead_letters WHERE source_customer_id = ?"
)
# acknowledgements of batches finished before ?1, except each customer's current one
PRUNE_ACKNOWLEDGEMENTS: Final = (
    "DELETE FROM acknowledgements WHERE batch_key IN "
    "(SELECT batch_key FROM batches WHERE finished_at < ?1) "
    "AND NOT EXISTS (SELECT 1 FROM acknowledged AS a "
    "WHERE a.source_customer_id = acknowledgements.source_customer_id "
    "AND a.batch_key = acknowledgements.batch_key)"
)

# --- document parts (customer_sync/ledger/parts.py) ---------------------------------------
# ?1 is a JSON object {sourceCustomerId: fingerprint}
DOCUMENT_PARTS: Final = (
    "SELECT p.source_customer_id, p.parts FROM json_each(?1) AS j "
    "JOIN document_parts AS p ON p.source_customer_id = j.key AND p.fingerprint = j.value"
)
CUSTOMERS_WITH_PARTS: Final = (
    "SELECT p.source_customer_id FROM json_each(?1) AS j "
    "JOIN document_parts AS p ON p.source_customer_id = j.key AND p.fingerprint = j.value"
)
RECORD_PARTS: Final = (
    "INSERT INTO document_parts (source_customer_id, fingerprint, parts) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
# a customer's parts other than this fingerprint's and the acknowledged one's
PRUNE_PARTS: Final = (
    "DELETE FROM document_parts WHERE (source_customer_id, fingerprint) IN ("
    "SELECT p.source_customer_id, p.fingerprint FROM json_each(?1) AS j "
    "JOIN document_parts AS p ON p.source_customer_id = j.key AND p.fingerprint != j.value "
    "LEFT JOIN acknowledged AS a ON a.source_customer_id = j.key "
    "WHERE a.fingerprint IS NOT p.fingerprint)"
)

# --- kept documents (the enrollment-ended action, customer_sync/run/enrollment.py) --------
KEPT_DOCUMENTS: Final = (
    "SELECT k.source_customer_id, k.document FROM json_each(?1) AS j "
    "JOIN kept_documents AS k ON k.source_customer_id = j.key AND k.fingerprint = j.value"
)
CUSTOMERS_WITH_KEPT_DOCUMENTS: Final = (
    "SELECT k.source_customer_id FROM json_each(?1) AS j "
    "JOIN kept_documents AS k ON k.source_customer_id = j.key AND k.fingerprint = j.value"
)
KEEP_DOCUMENT: Final = (
    "INSERT INTO kept_documents (source_customer_id, fingerprint, document) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING"
)
PRUNE_KEPT_DOCUMENTS: Final = (
    "DELETE FROM kept_documents WHERE (source_customer_id, fingerprint) IN ("
    "SELECT k.source_customer_id, k.fingerprint FROM json_each(?1) AS j "
    "JOIN kept_documents AS k ON k.source_customer_id = j.key AND k.fingerprint != j.value "
    "LEFT JOIN acknowledged AS a ON a.source_customer_id = j.key "
    "WHERE a.fingerprint IS NOT k.fingerprint)"
)
