"""The partner's refusals grouped by reason: each validation error's field and message.

A rejected customer's answer is the delivery's text (``customer_sync/adapters/delivery.py``'s
``_describe``): ``HTTP <status> <title>: <field>: <message>; <field>: <message>``. Each
``field: message`` is a reason; a customer refused without validation errors has the
``HTTP <status> <title>`` as its reason. Values the partner might echo (quoted text, runs
of four or more digits such as a postal code, last4 or iin) are masked, so reasons group
and never carry card data. Pure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Final

_HEAD: Final = re.compile(r"^(HTTP \d{3}[^:]*)(?::\s*(.*))?$", re.S)
_QUOTED: Final = re.compile(r"'[^']*'|\"[^\"]*\"")
_DIGITS: Final = re.compile(r"\d{4,}")
MAX_REASON: Final = 200


def masked(text: str) -> str:
    """``text`` with quoted values and runs of four or more digits masked (an HTTP status
    stays)."""
    return _DIGITS.sub("#", _QUOTED.sub("'…'", text)).strip()[:MAX_REASON]


def refusal_reasons(answer: str | None) -> list[str]:
    """The distinct reasons in one rejected customer's answer, in order."""
    if not answer:
        return ["(no answer)"]
    match = _HEAD.match(answer.strip())
    if match is None:
        return [masked(answer)]
    head, rest = match.group(1).strip(), match.group(2)
    if not rest:
        return [masked(head)]
    reasons = [masked(part) for part in rest.split("; ") if part.strip()]
    return list(dict.fromkeys(reasons)) or [masked(head)]


def rejected_by_reason(answers: Iterable[str | None]) -> dict[str, int]:
    """Reason -> rejected customers it names (a customer counts once per reason), most
    frequent first."""
    counts: Counter[str] = Counter()
    for answer in answers:
        counts.update(refusal_reasons(answer))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
