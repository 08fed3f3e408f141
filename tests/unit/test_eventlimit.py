"""Event budget per model: a burst, then one per refill period; models do not share a budget."""

from __future__ import annotations

from infergate_operator.eventlimit import BURST, REFILL_SECONDS, EventLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flapping_model_gets_its_burst_then_one_event_per_refill_period() -> None:
    clock = Clock()
    limiter = EventLimiter(clock=clock)
    allowed = sum(limiter.allow("team-a", "flappy") for _ in range(100))
    assert allowed == BURST
    clock.now += REFILL_SECONDS / 2
    assert not limiter.allow("team-a", "flappy")
    clock.now += REFILL_SECONDS / 2
    assert limiter.allow("team-a", "flappy")
    assert not limiter.allow("team-a", "flappy")


def test_one_models_flood_leaves_another_models_budget_whole() -> None:
    limiter = EventLimiter(clock=Clock())
    for _ in range(100):
        limiter.allow("team-a", "flappy")
    assert sum(limiter.allow("team-a", "calm") for _ in range(BURST)) == BURST
    assert sum(limiter.allow("team-b", "flappy") for _ in range(BURST)) == BURST


def test_a_deleted_model_is_forgotten_and_a_new_one_of_that_name_starts_full() -> None:
    limiter = EventLimiter(clock=Clock())
    for _ in range(100):
        limiter.allow("team-a", "m")
    limiter.forget("team-a", "m")
    assert limiter._buckets == {}
    assert limiter.allow("team-a", "m")
