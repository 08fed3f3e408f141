"""Reconcile slots: spec changes before background re-reads, namespaces in turn, cancellation safe."""

from __future__ import annotations

import asyncio

import pytest
from infergate_operator.fairslots import BACKGROUND_TURN, FairSlots, Priority


async def _served_order(slots: FairSlots, requests: list[tuple[int, str, str]]) -> list[str]:
    """Fills the one slot, queues `requests` (priority, namespace, label) in order, returns who ran when."""
    order: list[str] = []
    gate = asyncio.Event()

    async def holder() -> None:
        async with slots.slot(Priority.CHILD, "x"):
            await gate.wait()

    async def worker(priority: int, namespace: str, label: str) -> None:
        async with slots.slot(priority, namespace):
            order.append(label)
            await asyncio.sleep(0)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    tasks = []
    for priority, namespace, label in requests:
        tasks.append(asyncio.create_task(worker(priority, namespace, label)))
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *tasks)
    return order


def test_a_spec_change_goes_before_every_queued_background_reread() -> None:
    requests = [(Priority.BACKGROUND, "a", f"resume-{i}") for i in range(5)]
    requests.append((Priority.SPEC, "a", "spec"))
    order = asyncio.run(_served_order(FairSlots(1), requests))
    assert order[0] == "spec"
    assert order[1:] == [f"resume-{i}" for i in range(5)]


def test_namespaces_take_turns_so_a_burst_does_not_delay_another_namespace() -> None:
    requests = [(Priority.SPEC, "burst", f"burst-{i}") for i in range(6)]
    requests.append((Priority.SPEC, "quiet", "quiet-0"))
    order = asyncio.run(_served_order(FairSlots(1), requests))
    assert order.index("quiet-0") <= 1  # arrival order would have put it last (index 6)
    assert [o for o in order if o.startswith("burst")] == [f"burst-{i}" for i in range(6)]


def test_a_cancelled_waiter_leaves_no_slot_taken() -> None:
    async def scenario() -> int:
        slots = FairSlots(1)
        await slots.acquire(Priority.CHILD, "a")
        waiter = asyncio.create_task(slots.acquire(Priority.SPEC, "b"))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        slots.release()
        async with slots.slot(Priority.BACKGROUND, "c"):
            pass
        return slots.busy + slots.waiting()

    assert asyncio.run(scenario()) == 0


def test_never_more_than_the_limit_at_once() -> None:
    async def scenario() -> int:
        slots = FairSlots(3)
        running = peak = 0

        async def work(i: int) -> None:
            nonlocal running, peak
            async with slots.slot(i % 3, f"ns-{i % 5}"):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.001)
                running -= 1

        await asyncio.gather(*(work(i) for i in range(60)))
        return peak

    assert asyncio.run(scenario()) == 3


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        FairSlots(0)


def test_a_steady_stream_of_urgent_work_still_lets_background_work_through() -> None:
    requests = [(Priority.BACKGROUND, "a", "resume")]
    requests += [(Priority.CHILD, f"ns-{i}", f"child-{i}") for i in range(20)]
    order = asyncio.run(_served_order(FairSlots(1), requests))
    assert order.index("resume") < BACKGROUND_TURN
