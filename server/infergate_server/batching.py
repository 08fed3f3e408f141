"""A dynamic batcher: one bounded queue per model, greedy batches, one future per request.

Workers wake on an event (no polling). A worker takes the oldest request and every queued request with
the same batch key, up to `max_batch_size` rows. With `max_queue_delay_s == 0` (the default) it never
waits for more: on CPU, running now beats waiting to fill a batch. With a delay, it waits at most until
the oldest request has waited that long, or until a full batch is queued. Time comes from an injectable
monotonic clock (the loop's by default).

`max_concurrent_batches` batches run at once, and one more may be handed over ahead of its turn when a
full batch is already queued: the backend's worker (whose pool has exactly that many threads) then
starts it the moment the running one returns, instead of waiting for the event loop to be scheduled,
see the result, and hand the next batch over. A staged batch is full, so it could not have grown by
waiting. On a 2-core host that round trip left ONNX Runtime idle for about a tenth of the time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .backends.base import BackendError
from .errors import QueueFull, ServingError

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

RunBatch = Callable[[Sequence[P]], Awaitable[Sequence[R]]]


class BatchLengthMismatch(BackendError):  # noqa: N818
    """A batch call returned a different number of results than it was given requests."""


@dataclass(eq=False)
class _Item(Generic[P, R]):
    payload: P
    rows: int
    key: Hashable
    enqueued_at: float
    future: asyncio.Future[R] = field(repr=False)


class Batcher(Generic[P, R]):
    def __init__(
        self,
        run_batch: RunBatch[P, R],
        *,
        max_batch_size: int,
        max_queue_delay_s: float = 0.0,
        max_queue_depth: int,
        max_concurrent_batches: int = 1,
        clock: Callable[[], float] | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_busy: Callable[[float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {max_queue_delay_s}")
        if max_queue_depth < 1:
            raise ValueError(f"max_queue_depth must be >= 1, got {max_queue_depth}")
        if max_concurrent_batches < 1:
            raise ValueError(f"max_concurrent_batches must be >= 1, got {max_concurrent_batches}")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_depth = max_queue_depth
        self._concurrency = max_concurrent_batches
        self._clock = clock
        self._on_batch = on_batch
        # Busy time: wall time with at least one batch running (overlapping batches counted once).
        self._on_busy = on_busy
        self._busy_since: float | None = None
        self._queue: collections.deque[_Item[P, R]] = collections.deque()
        self._arrived = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self.in_flight = 0
        self.running_batches = 0  # handed to run_batch and not returned: running, or staged behind

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _busy_clock(self) -> float:
        # Not the loop's clock: uvloop's advances once per loop iteration (1 ms), and an inline batch
        # starts and ends within one.
        return self._clock() if self._clock is not None else time.perf_counter()

    @property
    def depth(self) -> int:
        """Requests waiting for a worker (not those in a running batch)."""
        return len(self._queue)

    def has_room(self) -> bool:
        return len(self._queue) < self.max_queue_depth

    def start(self) -> None:
        if not self._workers:  # one worker per running batch, and one for the staged batch
            self._workers = [
                asyncio.create_task(self._work(), name=f"batcher-{i}") for i in range(self._concurrency + 1)
            ]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(ServingError("server is shutting down"))

    def submit(
        self, payload: P, rows: int, key: Hashable = None, *, fair_share: bool = False
    ) -> asyncio.Future[R]:
        """Queue one request; raises QueueFull at once when the queue is at its bound. A request its
        client's fair share admits (fairness.py) may go past the bound, up to twice it."""
        bound = 2 * self.max_queue_depth if fair_share else self.max_queue_depth
        if len(self._queue) >= bound:
            raise QueueFull(f"queue full ({self.max_queue_depth} requests waiting)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        item = _Item(payload, rows, key, loop.time() if self._clock is None else self._clock(), fut)
        self._queue.append(item)
        self._arrived.set()
        return fut

    def withdraw(self, fut: asyncio.Future[R]) -> None:
        """Take the request of `fut`, whose caller gave up (timed out, cancelled), out of the queue now
        rather than when a worker reaches it, so it stops counting against the queue's bound. A done
        callback on every future would do the same at a loop callback per request."""
        for item in self._queue:
            if item.future is fut:
                self._queue.remove(item)
                return

    def _full_batch_queued(self, key: Hashable) -> bool:
        rows = 0
        for it in self._queue:
            if it.key == key:
                rows += it.rows
                if rows >= self.max_batch_size:
                    return True
        return False

    def _may_take(self) -> bool:
        if not self._queue:
            return False
        if self.running_batches < self._concurrency:
            return True
        return self.running_batches == self._concurrency and self._full_batch_queued(self._queue[0].key)

    async def _work(self) -> None:
        while True:
            if not self._may_take():
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self.max_queue_delay_s > 0 and self.running_batches < self._concurrency:
                await self._wait_to_fill()
                if not self._may_take():  # another worker took the queue meanwhile
                    continue
            batch = self._take()
            if batch:
                await self._run(batch)
                self._arrived.set()  # a runner is free: a waiting worker may take a partial batch now

    async def _wait_to_fill(self) -> None:
        while self._queue:
            head = self._queue[0]
            if self._full_batch_queued(head.key):
                return
            remaining = head.enqueued_at + self.max_queue_delay_s - self._now()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Item[P, R]]:
        head = self._queue[0]
        batch: list[_Item[P, R]] = []
        rows = 0
        kept: collections.deque[_Item[P, R]] = collections.deque()
        for it in self._queue:
            if it.future.done():
                continue
            if it.key == head.key and (not batch or rows + it.rows <= self.max_batch_size):
                batch.append(it)
                rows += it.rows
            else:
                kept.append(it)
        self._queue = kept
        return batch

    def alone(self) -> bool:
        """True inside a batch call when it is the only batch handed over and nothing waits behind it."""
        return self.running_batches == 1 and not self._queue

    async def _run(self, batch: list[_Item[P, R]]) -> None:
        self.in_flight += len(batch)
        self.running_batches += 1
        if self.running_batches == 1:
            self._busy_since = self._busy_clock()
        try:
            if self._on_batch is not None:
                self._on_batch(sum(it.rows for it in batch))
            try:
                results = await self._call(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    return
                # One bad request must not fail its batch mates: run each alone to find out whose it was.
                log.info("batch of %d failed (%s); retrying its requests one by one", len(batch), exc)
                for it in batch:
                    try:
                        (result,) = await self._call([it])
                    except Exception as single_exc:
                        _fail(it, single_exc)
                    else:
                        _resolve(it, result)
                return
            for it, result in zip(batch, results, strict=True):
                _resolve(it, result)
        finally:
            self.in_flight -= len(batch)
            self.running_batches -= 1
            if self.running_batches == 0 and self._busy_since is not None:
                busy, self._busy_since = self._busy_clock() - self._busy_since, None
                if self._on_busy is not None:
                    self._on_busy(max(busy, 0.0))

    async def _call(self, batch: list[_Item[P, R]]) -> Sequence[R]:
        results = await self._run_batch([it.payload for it in batch])
        if len(results) != len(batch):
            raise BatchLengthMismatch(f"batch call returned {len(results)} results for {len(batch)} requests")
        return results


def _resolve(item: _Item[P, R], result: R) -> None:
    if not item.future.done():
        item.future.set_result(result)


def _fail(item: _Item[P, R], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
