"""The dead letters as a JSONL file: what an operator hands on, owner-only."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import orjson

from customer_sync.ledger.records import DeadLetter


def export_dead_letters(
    letters: Iterable[DeadLetter], path: Path, *, include_documents: bool = False
) -> int:
    """Write ``letters`` as JSONL (owner-only file, replaced atomically); how many.

    Without ``include_documents`` a line holds the id, method, failure details and the
    partner's answer. With it, also the document that was sent, which is card data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp creates the file 0600
            for letter in letters:
                line: dict[str, object] = {
                    "sourceCustomerId": letter.source_customer_id,
                    "method": letter.method,
                    "kind": letter.kind,
                    "httpStatus": letter.http_status,
                    "requestId": letter.request_id,
                    "answer": letter.answer,
                    "failures": letter.failures,
                    "firstFailedAt": letter.first_failed_at,
                    "lastFailedAt": letter.last_failed_at,
                    "runId": letter.run_id,
                    "batchId": letter.batch_id,
                    "fingerprint": letter.fingerprint,
                }
                if include_documents:
                    line["document"] = orjson.Fragment(letter.document)
                out.write(orjson.dumps(line) + b"\n")
                written += 1
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written
