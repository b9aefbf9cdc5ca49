"""The terminal progress display counts every customer, whatever how often it redraws."""

from __future__ import annotations

from customer_sync.run.progress import DeliveryProgress


def test_every_customer_and_batch_is_counted_by_the_end() -> None:
    progress = DeliveryProgress(1_000, enabled=True)
    with progress:
        for _ in range(20):  # faster than it redraws: most calls only count
            progress.advance(50)
    assert progress.batches == 20
    assert progress._progress is not None
    task = progress._progress.tasks[0]
    assert task.completed == 1_000
    assert task.fields["batches"] == 20


def test_a_disabled_display_still_counts_batches() -> None:
    progress = DeliveryProgress(100, enabled=False)
    with progress:
        progress.advance(50)
        progress.advance(50)
    assert progress.batches == 2
