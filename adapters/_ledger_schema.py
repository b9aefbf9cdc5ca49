"""The ledger's SQLite schema and its migrations, versioned with ``PRAGMA user_version``.

``MIGRATIONS[n]`` takes a version-``n`` database to version ``n + 1``; a new ledger runs
them all. Add a step, never edit one that shipped.
"""

from __future__ import annotations

import sqlite3
from typing import Final

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
    error        TEXT,
    rejected     INTEGER NOT NULL DEFAULT 0, -- customers isolated as invalid by a split
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

MIGRATIONS: Final = (_V1,)
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
