"""The enrollment-ended action (``--end-enrollment-of-absent``, opt-in): the customers the
partner holds that tonight's extract lacks get their last acknowledged tree sent again with
``enrollmentOptInStatus`` INACTIVE and an ``enrollmentEndDate``.

**Trade-off.** That needs the last acknowledged document of every customer, which the ledger
otherwise never keeps (only its fingerprint and non-sensitive parts). With the option on,
each real run keeps the documents it plans in ``kept_documents`` (card data and postal codes
at rest: the ledger file is owner-only, a PostgreSQL ledger's tables must be kept to the
service role); every real run without it empties that table. A customer acknowledged before
the option was on has no kept document until a run with the option plans it; an absent one
without it is counted (``enrollment_end_no_document``), not sent.

Runs after the absent guard (a truncated export stops the run before this, as before any
send) and after the night's delivery; not with ``--stream`` (who is absent is known only
once everything was sent) nor in a dry run. The ended documents are acknowledged under
``ended-...`` fingerprints: a customer still absent the next night is not sent again, one
that comes back is planned as changed and its full tree goes again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from customer_sync.adapters.spool import SpoolWriter
from customer_sync.flows.deliver import deliver_spool
from customer_sync.ledger.outcomes import customer_results
from customer_sync.run.report import SyncResult
from customer_sync.transforms.changes import parts_json
from customer_sync.transforms.enrollment import ended_document, ended_fingerprint

log = logging.getLogger(__name__)

ENDED_SPOOL = "ended.arrow"


def ended_documents(
    absent: Sequence[str], ledger: Any, end_date: str
) -> tuple[list[tuple[str, str, bytes]], int, int]:
    """(id, fingerprint, ended document) of the absent customers whose last acknowledged
    document is kept and not ended yet; how many had no kept document; how many were
    ended already."""
    acknowledged = ledger.acknowledged_fingerprints(list(absent))
    kept = ledger.kept_documents(acknowledged)
    rows: list[tuple[str, str, bytes]] = []
    without = already = 0
    for customer_id in sorted(acknowledged):
        document = kept.get(customer_id)
        if document is None:
            without += 1
            continue
        ended = ended_document(document, end_date)
        if ended is None:
            already += 1
            continue
        rows.append((customer_id, ended_fingerprint(ended), ended))
    return rows, without, already


async def end_enrollment_of_absent(
    result: SyncResult,
    absent: Sequence[str],
    ledger: Any,
    client: Any,
    run_id: str,
    run_dir: Path,
    *,
    batch_size: int,
    concurrency: int,
    policy: Any,
) -> list[Any]:
    """Send the absent customers' ended trees (PUT); the counts go into ``result``, the
    batch outcomes are returned (for the report's batches)."""
    end_date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows, without, already = ended_documents(absent, ledger, end_date)
    result.enrollment_end_no_document = without
    result.enrollment_already_ended += already
    if without:
        log.warning(
            "%d absent customers have no kept document (acknowledged before "
            "--end-enrollment-of-absent was on): their enrollment is not ended",
            without,
        )
    if not rows:
        return []
    # kept first: the next night reads the ended tree under its acknowledged fingerprint
    ledger.keep_documents(rows)
    ledger.record_document_parts([(cid, fp, parts_json(doc)) for cid, fp, doc in rows])
    spool_path = run_dir / ENDED_SPOOL
    try:
        with SpoolWriter(spool_path) as spool:
            ids, fingerprints, documents = zip(*rows, strict=True)
            spool.write(list(ids), ["PUT"] * len(rows), list(fingerprints), list(documents))
        outcomes = await deliver_spool(
            spool_path,
            client,
            ledger,
            run_id,
            batch_size=batch_size,
            concurrency=concurrency,
            policy=policy,
            batch_prefix=f"{run_id}-ended",
        )
    finally:
        spool_path.unlink(missing_ok=True)
    ended = sum(
        1
        for outcome in outcomes
        for what, _ in customer_results(outcome).values()
        if what == "acknowledged"
    )
    result.customers_enrollment_ended += ended
    result.customers_enrollment_end_failed += len(rows) - ended
    log.info(
        "Enrollment ended for %d of %d absent customers (%d failed, %d ended already)",
        ended,
        len(absent),
        len(rows) - ended,
        already,
    )
    return list(outcomes)
