"""The partner's error text, made safe to store (issue 11). Pure: no I/O.

A partner may echo what it received in ``title`` or ``validationErrors``: our session
token, postal codes, last4, iin, whole documents. Everything that turns the partner's
answer into text that is stored (report.json, the ledger's ``answer``, dead-letter
exports, logs) goes through ``problem_text`` / ``redacted``:

* only known fields are kept: ``title`` and, per validation error, ``field``, ``message``,
  ``sourceCustomerId``, ``customerIndex``, ``code`` (everything else is dropped);
* the message of an error about a sensitive field (postalCode, last4, iin, token...) is
  replaced by a mask;
* every exact secret passed in (the current token, the batch's postal codes, last4 and iin
  of at least 4 characters) is masked wherever it occurs;
* anything shaped like a card number (12-19 digits, optional spaces or dashes), a JWT or
  a bearer credential is masked;
* an echoed structure (a ``{...}`` span longer than ``MAX_ECHO`` characters: a document,
  the request's headers) is replaced by ``{…}``;
* the result is capped at ``MAX_TEXT`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

MASK = "***"
MAX_TEXT = 2000
MIN_SECRET_LENGTH = 4
MAX_ECHO = 80
SENSITIVE_FIELDS = frozenset(
    {"postalcode", "last4", "iin", "sessiontoken", "token", "authorization", "cardnumber", "pan"}
)
"""Field names (lower case, last path segment) whose values are never shown."""
KEPT_ERROR_FIELDS = ("field", "message", "sourceCustomerId", "customerIndex", "code")

_CARD_NUMBER = re.compile(r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])")
_JWT = re.compile(r"\beyJ[\w-]*\.[\w-]*\.[\w-]*")
_BEARER = re.compile(r"(?i)\b(bearer|x-cdlx-session-token['\"]?\s*[:=]\s*['\"]?)\s*[\w.~+/=-]+")


def sensitive_values(documents: Iterable[bytes]) -> frozenset[str]:
    """The postalCode, last4 and iin values (at least 4 characters) in Customer documents."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.lower() in SENSITIVE_FIELDS and isinstance(value, str | int):
                    text = str(value)
                    if len(text) >= MIN_SECRET_LENGTH:
                        found.add(text)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for document in documents:
        try:
            walk(orjson.loads(document))
        except orjson.JSONDecodeError:
            continue
    return frozenset(found)


def without_echoed_structures(text: str) -> str:
    """``text`` with every top-level ``{...}`` span longer than ``MAX_ECHO`` cut to ``{…}``."""
    if "{" not in text:
        return text
    pieces: list[str] = []
    depth, start, done = 0, 0, 0
    for position, character in enumerate(text):
        if character == "{":
            if depth == 0:
                start = position
            depth += 1
        elif character == "}" and depth:
            depth -= 1
            if depth == 0 and position + 1 - start > MAX_ECHO:
                pieces.append(text[done:start] + "{…}")
                done = position + 1
    if depth and len(text) - start > MAX_ECHO:  # an echo cut short by the partner
        pieces.append(text[done:start] + "{…}")
        done = len(text)
    pieces.append(text[done:])
    return "".join(pieces)


def redacted(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret, card-number-like run, JWT and bearer credential masked."""
    wanted = {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH}
    for secret in sorted(wanted, key=len, reverse=True):  # longest first: no half-masks
        text = text.replace(secret, MASK)
    text = without_echoed_structures(text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda match: f"{match.group(1)} {MASK}", text)
    text = _CARD_NUMBER.sub(MASK, text)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return text


def _is_sensitive_field(path: object) -> bool:
    if not isinstance(path, str):
        return False
    last = re.split(r"[.\[\]]+", path.strip(".[]"))[-1] if path else ""
    return last.lower() in SENSITIVE_FIELDS


def error_item_text(item: Any) -> str:
    """One validation error as ``field: message`` (known fields only; see the module)."""
    if not isinstance(item, Mapping):
        return item if isinstance(item, str) else "(unreadable error)"
    kept = {key: item[key] for key in KEPT_ERROR_FIELDS if key in item}
    field_name = kept.get("field")
    message = kept.get("message")
    if _is_sensitive_field(field_name):
        message = MASK
    text = f"{field_name if isinstance(field_name, str) else '?'}: "
    text += message if isinstance(message, str) else ""
    if isinstance(kept.get("code"), str | int):
        text += f" [{kept['code']}]"
    return text


def problem_text(
    status: int,
    title: str | None,
    items: Sequence[Any],
    secrets: Iterable[str] = (),
) -> str:
    """``HTTP <status> <title>: <field: message>; ...``, safe to store (see the module)."""
    # each piece on its own: an echo the partner cut short must not swallow what follows
    text = f"HTTP {status} {without_echoed_structures(title or 'rejected')}"
    if items:
        text += ": " + "; ".join(without_echoed_structures(error_item_text(item)) for item in items)
    return redacted(text, secrets)
