"""The report of a sharded run: the planning phase's totals, each shard's counts, their sum.

Pure: built from records the parent flow gathered (``flows/parent.py``); no Prefect, no
ledger. Every customer of the extract is accounted for once: the shards' counts add up to
one run's (each shard owns disjoint chunks), and their sum of customers read must equal
what the planning phase read. Nothing in it carries card data: counts, ids and states.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

SUMMED_COUNTS = (
    "customers_read",
    "customers_held_back",
    "customers_unchanged",
    "customers_sent",
    "customers_failed",
    "customers_rejected",
    "customers_created",
    "customers_updated",
    "customers_absent",
    "customers_enrollment_ended",
    "customers_enrollment_end_failed",
    "orphan_accounts",
    "orphan_cards",
    "batches",
)


@dataclass(frozen=True)
class ShardRun:
    """One shard's child flow run, and what the shared ledger recorded of it."""

    shard: str
    flow_run_id: str
    state: str
    """The child flow run's final Prefect state type (``COMPLETED``, ``FAILED``...)."""
    message: str | None = None
    run_id: str | None = None
    """The ledger's run id (None: the run never got as far as the ledger)."""
    ledger_status: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED"


@dataclass
class ShardedResult:
    """What a sharded run did: planned once for the whole extract, delivered by M shards."""

    shards: int
    planned: dict[str, int] = field(default_factory=dict)
    """The planning phase's totals of the whole extract (nothing sent)."""
    shard_runs: list[ShardRun] = field(default_factory=list)
    stopped: str | None = None
    """Why no shard was started (a guard tripped in the planning phase), else None."""
    parent_flow_run_id: str | None = None
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    """Wall time of the planning phase (``plan``) and of the shards (``shards``)."""

    @property
    def totals(self) -> dict[str, int]:
        return summed_counts(run.counts for run in self.shard_runs)

    @property
    def incomplete(self) -> list[ShardRun]:
        return [run for run in self.shard_runs if not run.completed]

    @property
    def reconciles(self) -> bool:
        """Every customer read by the planning phase is accounted for once by the shards."""
        if self.stopped is not None or len(self.shard_runs) != self.shards:
            return False
        totals = self.totals
        accounted = sum(
            totals[key]
            for key in (
                "customers_held_back",
                "customers_unchanged",
                "customers_sent",
                "customers_failed",
            )
        )
        read = totals["customers_read"]
        return accounted == read == self.planned.get("customers_read", read)

    @property
    def status(self) -> str:
        if self.stopped is not None:
            return "stopped"
        if self.incomplete or len(self.shard_runs) != self.shards:
            return "failed"
        failed = self.totals["customers_failed"] + self.totals["customers_enrollment_end_failed"]
        return "completed" if failed == 0 else "partial"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "shards": self.shards,
            "parent_flow_run_id": self.parent_flow_run_id,
            "stopped": self.stopped,
            "planned": dict(self.planned),
            "totals": self.totals,
            "reconciles": self.reconciles,
            "seconds_by_stage": dict(self.seconds_by_stage),
            "shard_runs": [{**asdict(run), "counts": dict(run.counts)} for run in self.shard_runs],
        }


def summed_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The shards' counts added up, key by key (a missing key counts 0)."""
    totals = dict.fromkeys(SUMMED_COUNTS, 0)
    for one in counts:
        for key in SUMMED_COUNTS:
            totals[key] += int(one.get(key, 0) or 0)
    return totals


def incomplete_message(result: ShardedResult) -> str:
    """One line for a failed parent: which shards did not complete, and the counts."""
    missing = result.incomplete
    shown = "; ".join(
        f"shard {run.shard} {run.state.lower()}" + (f" ({run.message})" if run.message else "")
        for run in missing[:5]
    )
    totals = result.totals
    planned = result.planned.get("customers_planned", 0)
    return (
        f"{len(missing)} of {result.shards} shards did not complete: {shown}. "
        f"{totals['customers_sent']:,} of {planned:,} planned customers sent, "
        f"{totals['customers_failed']:,} failed; a rerun sends only what was not acknowledged"
    )


def summary_markdown(result: ShardedResult) -> str:
    """The parent's summary artifact: one row per shard and the total."""
    lines = [
        f"# Sharded sync: {result.status}",
        "",
        f"{result.shards} shards; planned for the whole extract: "
        + ", ".join(f"{key} {value:,}" for key, value in result.planned.items()),
        "",
    ]
    if result.stopped is not None:
        lines += [f"**Stopped before any shard started:** {result.stopped}", ""]
        return "\n".join(lines)
    columns = ("customers_read", "customers_held_back", "customers_unchanged",
               "customers_sent", "customers_failed")  # fmt: skip
    lines.append("| shard | state | ledger run | " + " | ".join(columns) + " |")
    lines.append("|---" * (len(columns) + 3) + "|")
    for run in result.shard_runs:
        cells = " | ".join(f"{int(run.counts.get(c, 0)):,}" for c in columns)
        lines.append(f"| {run.shard} | {run.state} | {run.run_id or '-'} | {cells} |")
    totals = result.totals
    cells = " | ".join(f"**{totals[c]:,}**" for c in columns)
    lines.append(f"| **total** | | | {cells} |")
    lines += [
        "",
        "counts reconcile with the planning phase"
        if result.reconciles
        else "**counts do not reconcile** with the planning phase",
    ]
    return "\n".join(lines)


def write_sharded_report(result: ShardedResult, path: Path) -> Path:
    """The report as JSON, owner-only, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as sink:
        os.fchmod(sink.fileno(), stat.S_IRUSR | stat.S_IWUSR)
        sink.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2))
    os.replace(partial, path)
    return path
