"""Request deadlines for one model, on a single timer.

Every request of a model has the same timeout, so deadlines fall due in the order the requests came.
One timer, armed for the oldest deadline still pending, does the work of a timer per request (each a
libuv timer started, stopped and closed again: a few µs of the event loop per request at saturation).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any


class Deadlines:
    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pending: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._expired: set[asyncio.Future[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, fut: asyncio.Future[Any]) -> None:
        """`fut` is cancelled if it is not done `timeout_s` from now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self._pending.append((deadline, fut))
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def expired(self, fut: asyncio.Future[Any]) -> bool:
        """Whether `fut` was cancelled because its deadline passed (answered once per future)."""
        if fut in self._expired:
            self._expired.discard(fut)
            return True
        return False

    def prune(self) -> None:
        """Drop the finished requests at the head, so done futures (and their results) are not held."""
        pending = self._pending
        while pending and pending[0][1].done():
            pending.popleft()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        self._expired.clear()

    def __len__(self) -> int:
        return len(self._pending)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending:
            deadline, fut = pending[0]
            if fut.done():
                pending.popleft()
            elif deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            else:
                pending.popleft()
                self._expired.add(fut)
                fut.cancel()
