"""When to read which servers' golden reports: at once on a transition, else once per golden period.

reconcile.py calls `track(key, model, targets, period_s)` with the current revision's pods while it
observes a model (no I/O: it only records them) and gets back the reads made so far. A change of targets
(a pod added or gone, turned ready or unready, a new revision) asks for a read at once; `run()` also
re-reads each model every period. Reads happen in their own tasks, bounded by the reader, never inside a
reconcile. When what the reads say changes, `on_change(key)` asks for a refresh of the model, and that
refresh writes status the usual way (one write per change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infergate_operator.golden import PodRead, PodTarget, report_key
from infergate_operator.golden_reader import GoldenReader

LOG = logging.getLogger("infergate.golden")
Key = tuple[str, str]
# spec.golden.periodSeconds bounded: reads are never more often than this...
MIN_PERIOD_S = 10.0
# ...nor rarer (also the period when the servers check only at startup, periodSeconds 0, or no golden set).
MAX_PERIOD_S = 600.0


def read_period(period_seconds: int | None) -> float:
    """How often to re-read a model's servers, in seconds, from its spec.golden.periodSeconds."""
    if not period_seconds:
        return MAX_PERIOD_S
    return min(max(float(period_seconds), MIN_PERIOD_S), MAX_PERIOD_S)


@dataclass
class _Model:
    model: str
    targets: tuple[PodTarget, ...]
    period_s: float
    due: float
    reads: dict[str, PodRead] = field(default_factory=dict)
    keys: tuple[Any, ...] = ()
    task: asyncio.Task[None] | None = None


class GoldenCollector:
    def __init__(self, reader: GoldenReader, on_change: Callable[[Key], None] | None = None) -> None:
        self.reader = reader
        self.on_change = on_change
        self.models: dict[Key, _Model] = {}
        self._wake = asyncio.Event()

    def track(
        self, key: Key, model: str, targets: tuple[PodTarget, ...], period_s: float
    ) -> Mapping[str, PodRead]:
        """Records the pods to read for `key`; returns the reads made so far (of pods still targeted)."""
        state = self.models.get(key)
        if not targets:
            self.forget(key)
            return {}
        if state is None or state.targets != targets or state.model != model:
            kept = {t.pod: t.address for t in targets}
            reads = {
                pod: read
                for pod, read in (state.reads if state is not None else {}).items()
                if kept.get(pod) == read.address and state is not None and state.model == model
            }
            state = _Model(model, targets, period_s, due=time.monotonic(), reads=reads)
            self.models[key] = state
            self._wake.set()
        state.period_s = period_s
        return dict(state.reads)

    def forget(self, key: Key) -> None:
        state = self.models.pop(key, None)
        if state is not None and state.task is not None:
            state.task.cancel()

    async def run(self) -> None:
        """Forever: start the reads that are due, then sleep until the next one is (or a transition)."""
        while True:
            now = time.monotonic()
            next_due = now + MAX_PERIOD_S
            for key, state in list(self.models.items()):
                busy = state.task is not None and not state.task.done()
                if not busy and state.due <= now:
                    state.due = now + state.period_s
                    state.task = asyncio.get_running_loop().create_task(self._read(key, state))
                next_due = min(next_due, state.due)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, next_due - now))

    async def _read(self, key: Key, state: _Model) -> None:
        try:
            reads = await asyncio.gather(
                *(self.reader.read(t.pod, t.address, state.model) for t in state.targets)
            )
        except Exception:  # a bug, not an unreadable server (those are reads with an error)
            LOG.exception("%s/%s: reading golden reports", *key)
            return
        if self.models.get(key) is not state:
            return  # forgotten, or the targets changed meanwhile: a newer read is under way
        state.reads = {read.pod: read for read in reads}
        keys = tuple(report_key(read) for read in reads)
        if keys != state.keys:
            state.keys = keys
            if self.on_change is not None:
                self.on_change(key)


__all__ = ["MAX_PERIOD_S", "MIN_PERIOD_S", "GoldenCollector", "read_period"]
