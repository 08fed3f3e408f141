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


class ReadDeadlines:
    """Body-read deadlines on one timer, as Deadlines: `start` marks the current task as reading a
    body; if it has not called `finish` within `timeout_s`, the task is cancelled. A finished read costs
    a flag, not a timer."""

    def __init__(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pending: collections.deque[list[Any]] = collections.deque()  # [deadline, task or None]
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        entry: list[Any] = [deadline, asyncio.current_task(loop)]
        self._pending.append(entry)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)
        return entry

    def finish(self, entry: list[Any]) -> bool:
        """Stop watching; True if the deadline had already passed (the task was cancelled for it).
        Finished reads at the head are dropped now, so the queue holds only reads still going on."""
        expired = entry[1] is _EXPIRED
        entry[1] = None
        pending = self._pending
        while pending and pending[0][1] is None:
            pending.popleft()
        return expired

    def __len__(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending:
            entry = pending[0]
            task = entry[1]
            if task is None or task.done():
                pending.popleft()
            elif entry[0] > now:
                self._timer = loop.call_at(entry[0], self._fire)
                return
            else:
                pending.popleft()
                entry[1] = _EXPIRED
                task.cancel()


_EXPIRED: Any = object()
