"""The PostgreSQL ledger's SQL: the same tables as ``customer_sync/ledger/_sqlite_sql.py``, typed.

``jsonb`` for the JSON columns, ``bytea`` for documents, ``timestamptz`` for times (read
back as the SQLite ledger's text, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), ids ``COLLATE "C"`` so
they sort byte-wise as in SQLite (the dead letters' keyset pages rely on one order).

The schema version is the one row of ``ledger_schema``; ``MIGRATIONS[n]`` takes version
``n`` to ``n + 1``, run under a transaction-level advisory lock so two workers opening a new
ledger at once do not both create it. Add a step, never edit one that shipped.
"""

from __future__ import annotations

from typing import Final

from customer_sync.ledger._common_sql import ACKNOWLEDGED_IDS as ACKNOWLEDGED_IDS
from customer_sync.ledger._common_sql import DEAD_LETTER_IDS as DEAD_LETTER_IDS
from customer_sync.ledger._common_sql import DEAD_LETTER_ON_CONFLICT
from customer_sync.ledger._common_sql import FORGET_KEPT_DOCUMENTS as FORGET_KEPT_DOCUMENTS
from customer_sync.ledger._common_sql import KNOWN_CUSTOMERS as KNOWN_CUSTOMERS
from customer_sync.ledger._common_sql import RUNNING_RUNS as RUNNING_RUNS
from customer_sync.ledger._common_sql import SENDING_OF_FINISHED_RUNS as SENDING_OF_FINISHED_RUNS

# the key of the advisory lock taken while migrating (any constant unlikely elsewhere)
MIGRATION_LOCK: Final = 0x6373_796E_635F_6D67  # "csync_mg"

_V1: Final = """
CREATE TABLE runs (
    run_id      text COLLATE "C" PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    status      text NOT NULL,
    parameters  jsonb NOT NULL,
    counts      jsonb,
    host        text NOT NULL,
    pid         integer NOT NULL
);
CREATE TABLE batches (
    batch_key    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text COLLATE "C" NOT NULL,
    batch_id     text COLLATE "C" NOT NULL,
    method       text NOT NULL CHECK (method IN ('POST', 'PUT')),
    customer_ids jsonb NOT NULL,
    customers    integer NOT NULL,
    state        text NOT NULL CHECK (state IN
                   ('sending', 'acknowledged', 'rejected', 'failed', 'interrupted')),
    attempts     integer NOT NULL,
    http_status  integer,
    request_id   text,
    request_ids  jsonb,
    error        text,
    acknowledged integer NOT NULL DEFAULT 0,
    rejected     integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    sent_at      timestamptz NOT NULL,
    finished_at  timestamptz,
    UNIQUE (run_id, batch_id)
);
CREATE INDEX batches_sending ON batches (run_id) WHERE state = 'sending';
CREATE TABLE acknowledged (
    source_customer_id text COLLATE "C" PRIMARY KEY,
    fingerprint        text NOT NULL,
    batch_key          bigint NOT NULL
);
CREATE TABLE dead_letters (
    source_customer_id text COLLATE "C" PRIMARY KEY,
    fingerprint        text NOT NULL,
    method             text NOT NULL CHECK (method IN ('POST', 'PUT')),
    document           bytea NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('rejected', 'failed')),
    http_status        integer,
    request_id         text,
    answer             text,
    first_failed_at    timestamptz NOT NULL,
    last_failed_at     timestamptz NOT NULL,
    failures           integer NOT NULL,
    run_id             text NOT NULL,
    batch_id           text NOT NULL
);
COMMENT ON COLUMN dead_letters.document IS 'the JSON sent; card data: service role only';
CREATE VIEW customer_acknowledgements AS
SELECT a.source_customer_id, a.fingerprint, b.finished_at AS acknowledged_at,
       b.run_id, b.batch_id, b.request_id, b.method
FROM acknowledged AS a JOIN batches AS b ON b.batch_key = a.batch_key
"""

# why a run ended as it did (customer_sync/run/outcome.py), as the SQLite ledger's step 2
_V2: Final = """
ALTER TABLE runs ADD COLUMN reason text
"""

# every acknowledgement, not only the last (the SQLite ledger's step 3): append-only, pruned
# by retention, backfilled from ``acknowledged``; indexed by batch for the history's join
# and the prune
_V3: Final = """
CREATE TABLE acknowledgements (
    source_customer_id text COLLATE "C" NOT NULL,
    fingerprint        text NOT NULL,
    batch_key          bigint NOT NULL
);
CREATE INDEX acknowledgements_by_batch ON acknowledgements (batch_key, source_customer_id);
INSERT INTO acknowledgements (source_customer_id, fingerprint, batch_key)
SELECT source_customer_id, fingerprint, batch_key FROM acknowledged
"""

# the delivery lock's holders: each live one holds the session-level advisory lock
# ``lock_key`` on its ledger's liveness connection; a row whose key nobody holds is stale
# (its process died: the server dropped the lock with the session) and is removed
_V4: Final = """
CREATE TABLE delivery_holders (
    lock_key   bigint PRIMARY KEY,
    run_id     text,
    host       text NOT NULL,
    pid        integer NOT NULL,
    since      text NOT NULL,
    owned      jsonb,
    partitions integer NOT NULL
)
"""

# the non-sensitive parts of each document sent, keyed by its fingerprint (the SQLite
# ledger's step 4, ``customer_sync/transforms/changes.py``)
_V5: Final = """
CREATE TABLE document_parts (
    source_customer_id text COLLATE "C" NOT NULL,
    fingerprint        text NOT NULL,
    parts              bytea NOT NULL,
    PRIMARY KEY (source_customer_id, fingerprint)
);
CREATE TABLE kept_documents (
    source_customer_id text COLLATE "C" NOT NULL,
    fingerprint        text NOT NULL,
    document           bytea NOT NULL,
    PRIMARY KEY (source_customer_id, fingerprint)
);
COMMENT ON TABLE kept_documents IS
    'only with --end-enrollment-of-absent; card data: service role only'
"""

MIGRATIONS: Final = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION: Final = len(MIGRATIONS)

SCHEMA_TABLE_EXISTS: Final = "SELECT to_regclass('ledger_schema') IS NOT NULL"
CREATE_SCHEMA_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS ledger_schema (version integer NOT NULL); "
    "INSERT INTO ledger_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT FROM ledger_schema)"
)
SCHEMA_VERSION_OF: Final = "SELECT version FROM ledger_schema"
SET_SCHEMA_VERSION: Final = "UPDATE ledger_schema SET version = %s"


def _t(column: str) -> str:
    """A time column as the ledger's text (what the SQLite ledger stores)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# --- statements ----------------------------------------------------------------------------
START_RUN: Final = (
    "INSERT INTO runs (run_id, started_at, status, parameters, host, pid) "
    "VALUES (%s, %s, 'running', %s::jsonb, %s, %s)"
)
FINISH_RUN: Final = (
    "UPDATE runs SET finished_at = %s, status = %s, counts = %s::jsonb, reason = %s "
    "WHERE run_id = %s"
)
_RUN_COLUMNS: Final = (
    f"run_id, {_t('started_at')}, {_t('finished_at')}, status, parameters::text, "
    "counts::text, host, pid, reason"
)
RUNS: Final = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT %s"  # noqa: S608
# one array parameter: no limit on bound variables, one index probe per id
ACKNOWLEDGED_FINGERPRINTS: Final = (
    "SELECT source_customer_id, fingerprint FROM acknowledged "
    "WHERE source_customer_id = ANY(%s::text[])"
)
MARK_SENDING: Final = (
    "INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, state, attempts, "
    "sent_at) VALUES (%s, %s, %s, %s::jsonb, %s, 'sending', 0, %s) "
    "ON CONFLICT (run_id, batch_id) DO UPDATE SET state = 'sending', method = excluded.method, "
    "customer_ids = excluded.customer_ids, customers = excluded.customers, "
    "sent_at = excluded.sent_at, finished_at = NULL"
)
FINISH_BATCH: Final = (
    "UPDATE batches SET state = %s, attempts = %s, http_status = %s, request_id = %s, "
    "error = %s, request_ids = %s::jsonb, acknowledged = %s, rejected = %s, failed = %s, "
    "finished_at = %s WHERE run_id = %s AND batch_id = %s"
)
RECORD_BATCH: Final = (
    "INSERT INTO batches (run_id, batch_id, method, customer_ids, customers, state, attempts, "
    "http_status, request_id, error, request_ids, acknowledged, rejected, failed, sent_at, "
    "finished_at) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, "
    "%s, %s, %s) "
    "ON CONFLICT (run_id, batch_id) DO UPDATE SET state = excluded.state, "
    "attempts = excluded.attempts, http_status = excluded.http_status, "
    "request_id = excluded.request_id, error = excluded.error, "
    "request_ids = excluded.request_ids, acknowledged = excluded.acknowledged, "
    "rejected = excluded.rejected, failed = excluded.failed, finished_at = excluded.finished_at"
)
# the batch's acknowledged customers as one JSON object {id: fingerprint}: one statement
ACKNOWLEDGE: Final = (
    "INSERT INTO acknowledged (source_customer_id, fingerprint, batch_key) "
    "SELECT key, value, (SELECT batch_key FROM batches WHERE run_id = %s AND batch_id = %s) "
    "FROM jsonb_each_text(%s::jsonb) "
    "ON CONFLICT (source_customer_id) DO UPDATE SET fingerprint = excluded.fingerprint, "
    "batch_key = excluded.batch_key"
)
# the same customers appended to the history of acknowledgements (same parameters)
RECORD_ACKNOWLEDGEMENTS: Final = (
    "INSERT INTO acknowledgements (source_customer_id, fingerprint, batch_key) "
    "SELECT key, value, (SELECT batch_key FROM batches WHERE run_id = %s AND batch_id = %s) "
    "FROM jsonb_each_text(%s::jsonb)"
)
ANY_DEAD_LETTER: Final = "SELECT EXISTS (SELECT FROM dead_letters)"
CLEAR_DEAD_LETTERS: Final = (
    "DELETE FROM dead_letters WHERE source_customer_id IN (SELECT jsonb_object_keys(%s::jsonb))"
)
# the last two parameters: the transaction's time, twice (first and last failure)
DEAD_LETTER: Final = (
    "INSERT INTO dead_letters (source_customer_id, fingerprint, method, document, kind, "  # noqa: S608 - a constant clause
    "http_status, request_id, answer, run_id, batch_id, first_failed_at, last_failed_at, "
    "failures) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1) "
    + DEAD_LETTER_ON_CONFLICT
)
SENDING_BATCHES: Final = (
    "SELECT run_id, batch_id, method, customer_ids::text, state, attempts, http_status, "  # noqa: S608
    f"request_id, error, {_t('sent_at')}, {_t('finished_at')} FROM batches "
    "WHERE state = 'sending' AND run_id = ANY(%s::text[]) ORDER BY batch_key"
)
SETTLE_BATCH: Final = (
    "UPDATE batches SET state = 'interrupted', error = %s, finished_at = %s "
    "WHERE run_id = %s AND batch_id = %s AND state = 'sending'"
)
SETTLE_RUN: Final = "UPDATE runs SET status = 'crashed' WHERE run_id = %s AND status = 'running'"
_DEAD_LETTER_COLUMNS: Final = (
    "source_customer_id, fingerprint, method, document, kind, http_status, request_id, answer, "
    f"{_t('first_failed_at')}, {_t('last_failed_at')}, failures, run_id, batch_id"
)
DEAD_LETTER_PAGE: Final = (
    f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE source_customer_id > %s "  # noqa: S608
    "ORDER BY source_customer_id LIMIT %s"
)
DEAD_LETTER_IDS_AMONG: Final = (
    "SELECT source_customer_id FROM dead_letters WHERE source_customer_id = ANY(%s::text[])"
)

# --- the morning-after queries (customer_sync/ledger/queries.py) ---------------------------------
RUN_BY_ID: Final = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s"  # noqa: S608
BATCHES_OF_RUN: Final = (
    "SELECT run_id, batch_id, method, customer_ids::text, state, attempts, http_status, "  # noqa: S608
    f"request_id, error, {_t('sent_at')}, {_t('finished_at')} FROM batches "
    "WHERE run_id = %s ORDER BY batch_key"
)
# jsonb containment of the id as an array element (never part of another id)
CUSTOMER_SENDS: Final = (
    "SELECT b.batch_key, b.run_id, b.batch_id, b.method, b.state, b.http_status, "  # noqa: S608
    f"b.request_id, {_t('b.sent_at')}, {_t('b.finished_at')}, a.fingerprint "
    "FROM batches AS b LEFT JOIN acknowledgements AS a "
    "ON a.batch_key = b.batch_key AND a.source_customer_id = %(id)s "
    "WHERE b.customer_ids @> jsonb_build_array(%(id)s::text) ORDER BY b.batch_key"
)
DEAD_LETTER_OF: Final = (
    "SELECT fingerprint, kind, http_status, request_id, answer, run_id, batch_id "
    "FROM dead_letters WHERE source_customer_id = %s"
)
# acknowledgements of batches finished before the time, except each customer's current one
PRUNE_ACKNOWLEDGEMENTS: Final = (
    "DELETE FROM acknowledgements WHERE batch_key IN "
    "(SELECT batch_key FROM batches WHERE finished_at < %s::timestamptz) "
    "AND NOT EXISTS (SELECT FROM acknowledged AS a "
    "WHERE a.source_customer_id = acknowledgements.source_customer_id "
    "AND a.batch_key = acknowledgements.batch_key)"
)

# --- the delivery lock (ledger/postgres_lock.py) --------------------------------------
# the key of the transaction-level advisory lock under which a holder is checked and added
DELIVERY_REGISTRY_LOCK: Final = 0x6373_796E_635F_646C  # "csync_dl"
DELIVERY_HOLDERS: Final = (
    "SELECT lock_key, run_id, host, pid, since, owned::text, partitions FROM delivery_holders"
)
ADD_DELIVERY_HOLDER: Final = (
    "INSERT INTO delivery_holders (lock_key, run_id, host, pid, since, owned, partitions) "
    "VALUES (%s, NULL, %s, %s, %s, %s::jsonb, %s)"
)
NAME_DELIVERY_HOLDER: Final = "UPDATE delivery_holders SET run_id = %s WHERE lock_key = %s"
REMOVE_DELIVERY_HOLDER: Final = "DELETE FROM delivery_holders WHERE lock_key = %s"

# --- document parts (customer_sync/ledger/parts.py) ---------------------------------------
# %s is a JSON object {sourceCustomerId: fingerprint}, as for SQLite
DOCUMENT_PARTS: Final = (
    "SELECT p.source_customer_id, p.parts FROM jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "JOIN document_parts AS p ON p.source_customer_id = n.id AND p.fingerprint = n.fp"
)
CUSTOMERS_WITH_PARTS: Final = (
    "SELECT p.source_customer_id FROM jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "JOIN document_parts AS p ON p.source_customer_id = n.id AND p.fingerprint = n.fp"
)
RECORD_PARTS: Final = (
    "INSERT INTO document_parts (source_customer_id, fingerprint, parts) VALUES (%s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)
PRUNE_PARTS: Final = (
    "DELETE FROM document_parts AS p USING jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "WHERE p.source_customer_id = n.id AND p.fingerprint <> n.fp "
    "AND p.fingerprint IS DISTINCT FROM "
    "(SELECT a.fingerprint FROM acknowledged AS a WHERE a.source_customer_id = n.id)"
)

# --- kept documents (the enrollment-ended action, customer_sync/run/enrollment.py) --------
KEPT_DOCUMENTS: Final = (
    "SELECT k.source_customer_id, k.document FROM jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "JOIN kept_documents AS k ON k.source_customer_id = n.id AND k.fingerprint = n.fp"
)
CUSTOMERS_WITH_KEPT_DOCUMENTS: Final = (
    "SELECT k.source_customer_id FROM jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "JOIN kept_documents AS k ON k.source_customer_id = n.id AND k.fingerprint = n.fp"
)
KEEP_DOCUMENT: Final = (
    "INSERT INTO kept_documents (source_customer_id, fingerprint, document) "
    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
)
PRUNE_KEPT_DOCUMENTS: Final = (
    "DELETE FROM kept_documents AS k USING jsonb_each_text(%s::jsonb) AS n(id, fp) "
    "WHERE k.source_customer_id = n.id AND k.fingerprint <> n.fp "
    "AND k.fingerprint IS DISTINCT FROM "
    "(SELECT a.fingerprint FROM acknowledged AS a WHERE a.source_customer_id = n.id)"
)
