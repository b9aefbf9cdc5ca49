"""The AIMD controller of the requests in flight (adapters/pacing.py): pure, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_sync.adapters.pacing import AimdController


def test_starts_at_the_ceiling_like_a_fixed_concurrency() -> None:
    assert AimdController(ceiling=8).allowed() == 8


def test_a_429_halves_the_limit_once_per_window() -> None:
    pacing = AimdController(ceiling=16)
    sent_in = pacing.window
    pacing.throttled_in(sent_in)
    assert pacing.allowed() == 8
    # the other requests of the same burst were sent before the decrease: no further cut
    for _ in range(10):
        pacing.throttled_in(sent_in)
    assert pacing.allowed() == 8
    assert pacing.throttled == 11
    # a request sent after the decrease that still meets a 429: the partner means it
    pacing.throttled_in(pacing.window)
    assert pacing.allowed() == 4


def test_never_below_the_floor() -> None:
    pacing = AimdController(ceiling=4)
    for _ in range(10):
        pacing.throttled_in(pacing.window)
    assert pacing.allowed() == 1


def test_fast_answers_raise_it_by_about_one_per_window() -> None:
    pacing = AimdController(ceiling=16)
    pacing.throttled_in(0)
    pacing.throttled_in(pacing.window)
    assert pacing.allowed() == 4
    for _ in range(4):  # one window of answers at the limit 4: not quite one more
        pacing.answered(0.05)
    assert pacing.allowed() == 4
    pacing.answered(0.05)
    assert pacing.allowed() == 5
    for _ in range(200):
        pacing.answered(0.05)
    assert pacing.allowed() == 16  # and never above the ceiling


def test_slow_answers_do_not_raise_it() -> None:
    pacing = AimdController(ceiling=16, slow_factor=3.0)
    pacing.answered(0.05)  # the fastest seen
    pacing.throttled_in(pacing.window)
    before = pacing.limit
    for _ in range(50):
        pacing.answered(0.5)  # ten times slower: the partner is queueing
    assert pacing.limit == before
    pacing.answered(0.1)
    assert pacing.limit > before


@pytest.mark.parametrize(
    "arguments",
    [{"ceiling": 0}, {"ceiling": 4, "floor": 5}, {"ceiling": 4, "decrease": 1.0},
     {"ceiling": 4, "increase": 0}, {"ceiling": 4, "slow_factor": 0.5}],
)  # fmt: skip
def test_bad_settings_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AimdController(**arguments)  # type: ignore[arg-type]


@given(
    ceiling=st.integers(1, 64),
    events=st.lists(st.one_of(st.floats(0.0, 2.0), st.none()), max_size=300),
)
def test_the_limit_stays_within_floor_and_ceiling(ceiling: int, events: list[float | None]) -> None:
    pacing = AimdController(ceiling=ceiling)
    for event in events:
        if event is None:
            pacing.throttled_in(pacing.window)
        else:
            pacing.answered(event)
        assert 1 <= pacing.allowed() <= ceiling
