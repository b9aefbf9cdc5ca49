"""The plan: which customers to create, update or skip, from the ledger's fingerprints.

A customer the partner never acknowledged is created (POST); one whose acknowledged
fingerprint differs, or whose last send failed, is updated with its full tree (PUT); the
rest are unchanged and skipped. Pure and vectorised: one call plans a 50k-customer chunk.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from customer_sync.schemas.errors import ConfigError, GuardTripped

Mode = Literal["sync", "create-only"]
Action = Literal["create", "update", "unchanged"]
ACTIONS: Final = ("create", "update", "unchanged")
# why a customer is in the plan, most telling first
REASONS: Final = ("dead-letter", "new", "changed", "full-refresh", "unchanged")
PLAN_COLUMNS: Final = (
    "sourceCustomerId",
    "fingerprint",
    "acknowledged_fingerprint",
    "action",
    "method",
    "reason",
)


@dataclass(frozen=True)
class Plan:
    """One row per customer of the chunk (input order kept), with the counts per action.

    ``frame`` columns: ``sourceCustomerId``, ``fingerprint`` (of this run's document),
    ``acknowledged_fingerprint`` (NA when never acknowledged), ``action`` (create, update,
    unchanged), ``method`` (POST, PUT; NA when unchanged) and ``reason`` (dead-letter: an
    earlier send failed; new; changed; full-refresh; unchanged).
    """

    frame: pd.DataFrame
    creates: int
    updates: int
    unchanged: int
    dead_letters_retried: int

    @property
    def counts(self) -> dict[str, int]:
        """Customers per action, the shape ``mass_update_guard`` takes."""
        return {"create": self.creates, "update": self.updates, "unchanged": self.unchanged}

    @property
    def to_send(self) -> pd.DataFrame:
        """The rows that go out (create and update), in input order."""
        return self.frame[self.frame["action"] != "unchanged"]


def plan_customers(
    documents: pd.DataFrame | Sequence[tuple[str, str]],
    acknowledged: Mapping[str, str],
    dead_lettered: Collection[str],
    *,
    full_refresh: bool = False,
    mode: Mode = "sync",
) -> Plan:
    """The plan for this chunk's documents against what the partner acknowledged.

    ``documents``: (sourceCustomerId, fingerprint) pairs, or a frame with those columns.
    ``acknowledged``: sourceCustomerId -> fingerprint of the last acknowledged document.
    ``dead_lettered``: customers whose last send was rejected or failed; always re-sent.

    ``full_refresh`` sends every customer. ``mode="create-only"`` sends every customer it
    sends by POST; it still skips what is acknowledged and unchanged, so a crashed first
    load resumed with the same command does not POST everything again.
    """
    if mode not in ("sync", "create-only"):
        raise ValueError(f"unknown mode {mode!r}")
    frame = _pairs(documents)
    ids = frame["sourceCustomerId"]
    known_fp = ids.map(acknowledged).astype("string")
    known = known_fp.notna().to_numpy(dtype=bool)
    dead = (
        ids.isin(dead_lettered).to_numpy(dtype=bool)
        if dead_lettered
        else np.zeros(len(frame), dtype=bool)
    )
    changed = known & (known_fp != frame["fingerprint"]).fillna(False).to_numpy(dtype=bool)

    sent = ~known | changed | dead | full_refresh
    action = np.where(~sent, "unchanged", np.where(known, "update", "create"))
    put = known & (mode != "create-only")
    method = pd.Series(np.where(put, "PUT", "POST"), index=frame.index, dtype="string")
    method = method.mask(~sent)
    reason = np.select(
        [dead, ~known, changed, np.full(len(frame), full_refresh)],
        ["dead-letter", "new", "changed", "full-refresh"],
        default="unchanged",
    )
    planned = pd.DataFrame(
        {
            "sourceCustomerId": ids,
            "fingerprint": frame["fingerprint"],
            "acknowledged_fingerprint": known_fp,
            "action": pd.Categorical(action, categories=ACTIONS),
            "method": method,
            "reason": pd.Categorical(reason, categories=REASONS),
        },
        index=frame.index,
    )
    return Plan(
        frame=planned,
        creates=int((action == "create").sum()),
        updates=int((action == "update").sum()),
        unchanged=int((~sent).sum()),
        dead_letters_retried=int(dead.sum()),
    )


def mass_update_guard(
    plan_counts: Mapping[str, int],
    known_customers: int,
    max_update_share: float = 0.5,
    allow_mass_update: bool = False,
) -> None:
    """Stop the run when it would update more than ``max_update_share`` of known customers.

    A broken export (a column shifted, a date format changed) changes every document; this
    stops it before anything is sent. Nothing is checked when no customer is known yet.
    """
    if not 0.0 <= max_update_share <= 1.0:
        raise ConfigError(f"max update share must be between 0 and 1, not {max_update_share}")
    updates = int(plan_counts.get("update", 0))
    if allow_mass_update or known_customers <= 0:
        return
    if updates > max_update_share * known_customers:
        raise GuardTripped(
            f"this run would update {updates:,} of the {known_customers:,} customers the "
            f"partner already has ({updates / known_customers:.1%}), more than the allowed "
            f"{max_update_share:.0%}; nothing was sent. If the change is expected, run again "
            "with --allow-mass-update (or a higher --max-update-share)."
        )


def _pairs(documents: pd.DataFrame | Sequence[tuple[str, str]]) -> pd.DataFrame:
    """(sourceCustomerId, fingerprint) as a two-column text frame; ids unique, no nulls."""
    if isinstance(documents, pd.DataFrame):
        missing = {"sourceCustomerId", "fingerprint"} - set(documents.columns)
        if missing:
            raise ValueError(f"plan input lacks columns {sorted(missing)}")
        frame = documents[["sourceCustomerId", "fingerprint"]].astype("string")
    else:
        frame = pd.DataFrame(
            list(documents), columns=["sourceCustomerId", "fingerprint"], dtype="string"
        )
    if frame.isna().any().any():
        raise ValueError("plan input has a missing sourceCustomerId or fingerprint")
    duplicated = frame["sourceCustomerId"].duplicated()
    if duplicated.any():
        first = frame["sourceCustomerId"][duplicated].iloc[0]
        raise ValueError(f"customer {first} appears more than once in the plan input")
    return frame


def absent_guard(
    absent: int,
    known_customers: int,
    max_absent_share: float = 0.1,
    allow_absent: bool = False,
) -> None:
    """Stop the run when more than ``max_absent_share`` of the customers the partner holds
    are missing from the extract: a truncated export looks like this.

    Nothing is checked when no customer is known yet.
    """
    if not 0.0 <= max_absent_share <= 1.0:
        raise ConfigError(f"max absent share must be between 0 and 1, not {max_absent_share}")
    if allow_absent or known_customers <= 0:
        return
    if absent > max_absent_share * known_customers:
        raise GuardTripped(
            f"{absent:,} of the {known_customers:,} customers the partner holds are absent "
            f"from this extract ({absent / known_customers:.1%}), more than the allowed "
            f"{max_absent_share:.0%}; nothing was sent. A truncated export looks like this. "
            "If they really left, run again with --allow-absent (or a higher "
            "--max-absent-share)."
        )
