"""Event rate limiting per model, as client-go's event recorder does it (its spam filter): a token bucket per
involved object, a burst of 25 Events, then one more per 5 minutes. A model that flaps (a node pool coming
and going, a golden check failing and passing) cannot flood the API server with Events; its status still
says what is true, and the Events dropped are counted (infergate_operator_events_dropped_total).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BURST = 25
REFILL_SECONDS = 300.0


@dataclass
class EventLimiter:
    clock: Callable[[], float]
    burst: int = BURST
    refill_seconds: float = REFILL_SECONDS
    _buckets: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

    def allow(self, namespace: str, name: str) -> bool:
        """Takes a token for one Event about namespace/name; False when its bucket is empty."""
        now = self.clock()
        tokens, since = self._buckets.get((namespace, name), (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) / self.refill_seconds)
        if tokens < 1:
            self._buckets[(namespace, name)] = (tokens, now)
            return False
        self._buckets[(namespace, name)] = (tokens - 1, now)
        return True

    def forget(self, namespace: str, name: str) -> None:
        self._buckets.pop((namespace, name), None)
