"""The terminal progress display counts every customer, whatever how often it redraws."""

from __future__ import annotations

from customer_sync.run.progress import DeliveryProgress, PreparationProgress


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


def test_preparation_counts_every_chunk_and_ends_full_whatever_the_estimate() -> None:
    progress = PreparationProgress(1_000, 3, enabled=True)  # the estimate is off by 10%
    with progress:
        for customers in (400, 400, 300):
            progress.chunk_done(customers)
        assert progress._progress is not None and progress._task is not None
        shown = progress._progress
        task = next(t for t in shown.tasks if t.id == progress._task)
        assert task.fields["detail"] == "3 chunks done"
    assert (task.completed, task.total) == (1_100, 1_100)  # not 1,100 of 1,000
    assert (progress.chunks_done, progress.customers) == (3, 1_100)


def test_preparing_while_delivering_shares_one_live_display() -> None:
    # a streamed run: rich allows one live display per console, so both are tasks of it
    with (
        DeliveryProgress(100, enabled=True) as delivering,
        PreparationProgress(100, 2, enabled=True) as preparing,
    ):
        preparing.chunk_done(50)
        delivering.advance(50)
        assert preparing._progress is delivering._progress
        assert [t.description for t in preparing._progress.tasks] == ["delivering", "preparing"]
        preparing.chunk_done(50)
    assert delivering._progress is not None
    assert not delivering._progress.live.is_started  # closed by the last one out
