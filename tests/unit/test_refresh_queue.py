"""handlers.schedule_refresh: re-reads of a model waiting for a reconcile slot fold into one.

At 10,000 models (bench/fleet.py) every child event, golden change and safety-net tick of a model queued
one more re-read behind the others: 53,217 waited for 16 slots 5 minutes after convergence, each a task
that re-read the whole model when its turn came. A re-read reads the model when it starts, so one waiting
re-read per model (the most urgent) covers every request made before it starts; one made after needs its
own. A spec change (a body to converge) never folds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from infergate_operator import handlers
from infergate_operator.fairslots import Priority

KEY = ("team-a", "m")


class FakeReconciler:
    """Records the work asked of it; each call waits for `grant` before it has its slot."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.grant = asyncio.Event()

    async def refresh(
        self, namespace: str, name: str, *, repair: bool, priority: Priority, started: Any
    ) -> None:
        await self.grant.wait()
        started()
        self.calls.append(("refresh", int(priority)))

    async def converge(self, body: Any, started: Any) -> None:
        await self.grant.wait()
        started()
        self.calls.append(("converge", body["metadata"]["generation"]))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeReconciler:
    work = FakeReconciler()
    monkeypatch.setattr(handlers.RUNTIME, "reconciler", work)
    monkeypatch.setattr(handlers.RUNTIME, "shards", None)
    monkeypatch.setattr(handlers.RUNTIME, "queued", {})
    monkeypatch.setattr(handlers.RUNTIME, "pending", {})
    monkeypatch.setattr(handlers.RUNTIME, "bodies", {})
    monkeypatch.setattr(handlers, "_scope", lambda namespace: namespace)
    return work


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_requests_while_a_re_read_waits_for_its_slot_fold_into_it(fake: FakeReconciler) -> None:
    async def go() -> None:
        handlers.schedule_refresh(KEY, 0)
        await settle()  # past its debounce: waiting for a slot
        for kind in ("child", "observe", "child", "resume"):
            handlers.schedule_refresh(KEY, 0, kind=kind)
            await settle()
        fake.grant.set()
        await settle()
        assert fake.calls == [("refresh", Priority.CHILD)]
        handlers.schedule_refresh(KEY, 0)  # after it started: a re-read of its own
        await settle()
        assert fake.calls == [("refresh", Priority.CHILD)] * 2
        assert handlers.RUNTIME.queued == {}

    asyncio.run(go())


def test_a_more_urgent_request_queues_and_spec_changes_never_fold(fake: FakeReconciler) -> None:
    async def go() -> None:
        handlers.schedule_refresh(KEY, 0, kind="observe")
        await settle()
        handlers.schedule_refresh(KEY, 0)  # more urgent than the waiting background re-read
        await settle()
        handlers.RUNTIME.bodies[KEY] = {"metadata": {"generation": 2}}
        handlers.schedule_refresh(KEY, 0)
        await settle()
        handlers.schedule_refresh(KEY, 0, kind="observe")  # folds into any of them
        await settle()
        fake.grant.set()
        await settle()
        assert sorted(fake.calls) == [
            ("converge", 2),
            ("refresh", Priority.CHILD),
            ("refresh", Priority.BACKGROUND),
        ]

    asyncio.run(go())
