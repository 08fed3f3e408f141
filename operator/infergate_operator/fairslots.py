"""Reconcile slots handed out by priority, then fairly across namespaces.

A plain semaphore serves waiters in arrival order: at startup the listing of ten thousand converged
models queues ten thousand re-reads, and a model whose spec changed meanwhile waits behind all of them;
a burst of new models in one namespace delays a one-line change in another. Here the waiter of the most
urgent priority goes first (a spec change before a child's echo before a periodic re-read), and within one
priority the namespaces take turns (round robin), each namespace's own waiters in arrival order. So that
a steady stream of urgent work cannot starve the rest, every BACKGROUND_TURN-th slot goes to the least
urgent waiter.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import IntEnum

BACKGROUND_TURN = 5


class Priority(IntEnum):
    """Lower goes first."""

    SPEC = 0
    """A model whose generation is ahead of its status.observedGeneration."""
    CHILD = 1
    """A child changed, a golden report changed, or a retry."""
    BACKGROUND = 2
    """The listing at start (models already converged) and the periodic safety-net re-read."""


class FairSlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.busy = 0
        self._granted = 0
        # priority -> namespace -> waiters, namespaces in turn order
        self._waiting: dict[int, OrderedDict[str, deque[asyncio.Future[None]]]] = {}

    def waiting(self) -> int:
        return sum(len(q) for by_ns in self._waiting.values() for q in by_ns.values())

    async def acquire(self, priority: int, namespace: str) -> None:
        if self.busy < self.limit and not self.waiting():
            self.busy += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        by_ns = self._waiting.setdefault(priority, OrderedDict())
        by_ns.setdefault(namespace, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted, then cancelled before it could use the slot
            else:
                self._forget(priority, namespace, future)
            raise

    def release(self) -> None:
        self.busy -= 1
        self._grant()

    def _grant(self) -> None:
        while self.busy < self.limit:
            future = self._next()
            if future is None:
                return
            self.busy += 1
            future.set_result(None)

    def _next(self) -> asyncio.Future[None] | None:
        self._granted += 1
        order = sorted(self._waiting, reverse=self._granted % BACKGROUND_TURN == 0)
        for priority in order:
            by_ns = self._waiting[priority]
            while by_ns:
                namespace, queue = next(iter(by_ns.items()))
                future = queue.popleft()
                if queue:
                    by_ns.move_to_end(namespace)  # its next waiter goes after the other namespaces
                else:
                    del by_ns[namespace]
                if not future.done():
                    return future
            del self._waiting[priority]
        return None

    def _forget(self, priority: int, namespace: str, future: asyncio.Future[None]) -> None:
        by_ns = self._waiting.get(priority)
        queue = by_ns.get(namespace) if by_ns is not None else None
        if queue is None or by_ns is None:
            return
        try:
            queue.remove(future)
        except ValueError:
            return
        if not queue:
            del by_ns[namespace]
        if not by_ns:
            del self._waiting[priority]

    @asynccontextmanager
    async def slot(self, priority: int, namespace: str) -> AsyncIterator[None]:
        await self.acquire(priority, namespace)
        try:
            yield
        finally:
            self.release()
