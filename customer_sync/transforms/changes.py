"""What changed in a customer's tree since the partner acknowledged it, part by part.

The ledger keeps, next to each document fingerprint, the document's **parts** (``parts_of``):
the values of every field that is not sensitive, per part: the customer's own fields, each
account's fields, and each card's (``cardType``, ``status``, ``networkIdentifier``, dates,
holder). Sensitive values (``postalCode``, ``last4``, ``iin``) are left out, and no hash of
them is kept either: a postal code or a last4 has so few values that any hash of it alone is
the value again to whoever reads the ledger. So ``part_changes`` can say "account A12:
status OPEN→CLOSED" and "card under account A12 (holder C1, opened 2024-01-01): closed",
and when the document's fingerprint changed with no part changing, it says that a postal
code or card number changed, without which.

Pure: documents in, parts and lines of text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from customer_sync.schemas import contract

PARTS_VERSION: Final = 1
"""Bump when the shape of ``parts_of`` changes; older parts are then read as unknown."""

SENSITIVE_CUSTOMER_FIELDS: Final = frozenset({"postalCode"})
SENSITIVE_CARD_FIELDS: Final = frozenset({"last4", "iin"})
# the kept fields, in the partner's order (the stored parts are lists of their values)
CUSTOMER_PART_FIELDS: Final = tuple(
    f for f in contract.CUSTOMER_COLUMNS if f not in SENSITIVE_CUSTOMER_FIELDS
)
ACCOUNT_PART_FIELDS: Final = contract.ACCOUNT_COLUMNS
_CARD_FIELDS: Final = (
    "sourceCustomerId",
    "cardType",
    "status",
    "networkIdentifier",
    "openDate",
    "closeDate",
)
SENSITIVE_CHANGE: Final = "postal code or card number (last4/iin): changed (values not kept)"
NO_EARLIER_PARTS: Final = "changed (the earlier send's parts were not recorded)"

Parts = dict[str, Any]
"""As stored, compact: ``{"v": 1, "c": [customer values of CUSTOMER_PART_FIELDS],
"a": [[account values of ACCOUNT_PART_FIELDS, [[card values of _CARD_FIELDS], ...]], ...]}``
(about a quarter of the document's size)."""


def parts_of(document: Mapping[str, Any]) -> Parts:
    """The non-sensitive parts of one Customer document (as the partner receives it)."""
    accounts = []
    for account in document.get("accounts") or ():
        cards = sorted(
            ([card.get(f) for f in _CARD_FIELDS] for card in account.get("cards") or ()),
            key=_card_order,
        )
        accounts.append([[account.get(f) for f in ACCOUNT_PART_FIELDS], cards])
    return {"v": PARTS_VERSION, "c": [document.get(f) for f in CUSTOMER_PART_FIELDS], "a": accounts}


def parts_json(document: bytes) -> bytes:
    """``parts_of`` a document given as the JSON bytes that go out, as compact JSON."""
    return orjson.dumps(parts_of(orjson.loads(document)))


def read_parts(stored: bytes | str | None) -> Parts | None:
    """Parts as the ledger gave them back; None when absent or of another version."""
    if stored is None:
        return None
    parts = orjson.loads(stored)
    return parts if isinstance(parts, dict) and parts.get("v") == PARTS_VERSION else None


def _expanded(parts: Parts) -> dict[str, Any]:
    """Parts by field name: ``{"customer": {..}, "accounts": {id: {"fields", "cards"}}}``."""
    accounts = {}
    for values, cards in parts["a"]:
        fields = dict(zip(ACCOUNT_PART_FIELDS, values, strict=True))
        accounts[str(fields["sourceAccountId"])] = {"fields": fields, "cards": cards}
    customer = dict(zip(CUSTOMER_PART_FIELDS, parts["c"], strict=True))
    return {"customer": customer, "accounts": accounts}


def part_changes(old: Parts | None, new: Parts, *, fingerprint_changed: bool = True) -> list[str]:
    """Lines saying what differs from ``old`` (acknowledged) to ``new`` (tonight's).

    ``old`` None: the earlier parts are unknown (sent before parts were recorded). When
    ``fingerprint_changed`` and no part differs, what changed is a sensitive value.
    """
    if old is None:
        return [NO_EARLIER_PARTS] if fingerprint_changed else []
    old, new = _expanded(old), _expanded(new)
    lines = [
        f"customer {name}: {_shown(before)}→{_shown(after)}"
        for name, before, after in _field_changes(old["customer"], new["customer"])
    ]
    old_accounts, new_accounts = old["accounts"], new["accounts"]
    for account_id in sorted(new_accounts.keys() - old_accounts.keys()):
        lines.append(f"account {account_id}: added")
    for account_id in sorted(old_accounts.keys() - new_accounts.keys()):
        lines.append(f"account {account_id}: left the tree")
    for account_id in sorted(old_accounts.keys() & new_accounts.keys()):
        before, after = old_accounts[account_id], new_accounts[account_id]
        lines.extend(
            f"account {account_id}: {name} {_shown(was)}→{_shown(now)}"
            for name, was, now in _field_changes(before["fields"], after["fields"])
        )
        lines.extend(_card_changes(account_id, before["cards"], after["cards"]))
    if not lines and fingerprint_changed:
        lines.append(SENSITIVE_CHANGE)
    return lines


def _field_changes(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[str, object, object]]:
    names = list(new) + [name for name in old if name not in new]
    return [(n, old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)]


def _card_changes(account_id: str, old: Sequence[list[Any]], new: Sequence[list[Any]]) -> list[str]:
    """Cards matched first when every kept field is equal, then by holder, type and open
    date (the same card with a new status or close date); the rest were added or left."""
    unmatched_old = [list(card) for card in old]
    remaining_new: list[list[Any]] = []
    for card in new:
        if card in unmatched_old:
            unmatched_old.remove(card)
        else:
            remaining_new.append(list(card))
    lines: list[str] = []
    for card in remaining_new:
        same = next((o for o in unmatched_old if _identity(o) == _identity(card)), None)
        label = _card_label(account_id, card)
        if same is None:
            lines.append(f"{label}: added")
            continue
        unmatched_old.remove(same)
        status = _CARD_FIELDS.index("status")
        if same[status] != "CLOSED" and card[status] == "CLOSED":
            lines.append(f"{label}: closed")
        else:
            lines.append(f"{label}: changed")
    lines.extend(f"{_card_label(account_id, card)}: left the tree" for card in unmatched_old)
    return lines


def _identity(card: Sequence[Any]) -> tuple[Any, ...]:
    return (card[0], card[1], card[4])  # holder, cardType, openDate


def _card_order(card: Sequence[Any]) -> tuple[str, ...]:
    return tuple("" if value is None else str(value) for value in card)


def _card_label(account_id: str, card: Sequence[Any]) -> str:
    return f"card under account {account_id} (holder {card[0]}, opened {_shown(card[4])})"


def _shown(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
