"""Prefect artifacts of a run: a summary, held-back customers by reason, failed batches.

Artifacts hold ids, counts and the partner's answers only; no card data or postal codes.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

import pandas as pd
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.context import FlowRunContext

from customer_sync.run.report import SyncResult, summary_lines

MAX_TABLE_ROWS = 1000


def _in_flow_run() -> bool:
    return FlowRunContext.get() is not None


async def publish_run_artifacts(result: SyncResult, held_back: list[pd.DataFrame]) -> None:
    """The summary, the held-back table and the failed-batch table, when in a flow run."""
    if not _in_flow_run():
        return
    markdown = "# customer-sync run\n\n" + "\n".join(f"- {line}" for line in summary_lines(result))
    await acreate_markdown_artifact(
        key="sync-summary", markdown=markdown, description="Counts that reconcile"
    )
    if held_back:
        frame = pd.concat(held_back).head(MAX_TABLE_ROWS)
        await acreate_table_artifact(
            key="held-back-customers",
            table=[{k: str(v) for k, v in row.items()} for row in frame.to_dict("records")],
            description=f"Customers held back, by reason (first {MAX_TABLE_ROWS})",
        )
    if result.rejected_by_reason:
        await acreate_table_artifact(
            key="rejected-by-reason",
            table=[
                {"reason": reason, "customers": str(count)}
                for reason, count in list(result.rejected_by_reason.items())[:MAX_TABLE_ROWS]
            ],
            description="The partner's refusals by validation error (field: message)",
        )
    failed = [o for o in result.batches if o.status != "acknowledged"][:MAX_TABLE_ROWS]
    if failed:
        await acreate_table_artifact(
            key="failed-batches",
            table=[
                {
                    "batch": o.batch_id,
                    "status": o.status,
                    "http_status": str(o.http_status),
                    "attempts": str(o.attempts),
                    "requestId": str(o.request_id),
                    "customers": ", ".join(o.customer_ids),
                    "partner answer": (o.error or "")[:500],
                }
                for o in failed
            ],
            description="Batches not fully acknowledged, with the partner's answers",
        )


class ProgressArtifact:
    """A Prefect progress artifact updated at most every ``step`` percent."""

    def __init__(self, total: int, step: float = 5.0) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.step = step
        self._shown = 0.0
        self._id: UUID | None = None
        self._updates: set[asyncio.Task[UUID]] = set()

    async def start(self) -> None:
        if _in_flow_run():
            self._id = await acreate_progress_artifact(
                progress=0.0, key="delivery-progress", description="Customers delivered"
            )

    def advance(self, customers: int) -> None:
        """Count delivered customers; the API update runs in the background, never blocking."""
        self.done += customers
        percent = min(100.0, 100.0 * self.done / self.total)
        if self._id is not None and (percent - self._shown >= self.step or percent >= 100.0):
            self._shown = percent
            update = asyncio.ensure_future(
                aupdate_progress_artifact(artifact_id=self._id, progress=percent)
            )
            self._updates.add(update)
            update.add_done_callback(self._updates.discard)

    async def finish(self) -> None:
        if self._updates:
            await asyncio.gather(*self._updates, return_exceptions=True)
