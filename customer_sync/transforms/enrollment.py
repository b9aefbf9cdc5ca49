"""An absent customer's last acknowledged document, with its enrollment ended.

The partner has no delete endpoint: a customer that left the bank's extract stays enrolled
at the partner until its enrollment is ended (``enrollmentOptInStatus`` INACTIVE and an
``enrollmentEndDate``), by a PUT of its full tree. Pure: document bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

import orjson

ENDED_PREFIX: Final = "ended-"
"""The fingerprint of an ended document starts so: never one of a document built from an
extract, so a customer that comes back is planned as changed (its full tree goes again)."""


def ended_document(document: bytes, end_date: str) -> bytes | None:
    """``document`` with ``enrollmentOptInStatus`` INACTIVE and ``enrollmentEndDate`` set
    (``end_date``, ``YYYY-MM-DDTHH:MM:SSZ``; an earlier end date already there is kept, and
    the end is never before ``enrollmentStartDate``); None when it is already ended."""
    customer = orjson.loads(document)
    existing = customer.get("enrollmentEndDate")
    if customer.get("enrollmentOptInStatus") == "INACTIVE" and existing:
        return None
    end = existing if existing and existing <= end_date else end_date
    start = customer.get("enrollmentStartDate")
    if start and end < start:  # same text form (UTC ...Z): compared as text
        end = start
    customer["enrollmentOptInStatus"] = "INACTIVE"
    customer["enrollmentEndDate"] = end
    return orjson.dumps(customer)  # the same field order and forms as the nest's JSON


def still_enrolled(absent: Sequence[str], fingerprints: Mapping[str, str]) -> list[str]:
    """The absent customers whose acknowledged document (``fingerprints``) is not an ended
    one: those whose enrollment was ended are no longer a question for the absent count."""
    return [cid for cid in absent if not fingerprints.get(cid, "").startswith(ENDED_PREFIX)]


def ended_fingerprint(document: bytes) -> str:
    """The fingerprint under which an ended document is acknowledged."""
    return ENDED_PREFIX + hashlib.blake2b(document, digest_size=12).hexdigest()
