"""Request deadlines on one timer, on a real event loop with real (short) timeouts."""

import asyncio

import pytest
from infergate_server.deadlines import Deadlines


def test_only_requests_still_pending_at_their_deadline_are_cancelled_in_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        d = Deadlines(0.05)
        early, answered = loop.create_future(), loop.create_future()
        d.add(early)
        d.add(answered)
        await asyncio.sleep(0.02)
        late = loop.create_future()
        d.add(late)  # due 20 ms after the first two
        answered.set_result("ok")
        await asyncio.sleep(0.045)  # the first two are due, the third not yet
        assert early.cancelled()
        assert answered.result() == "ok"
        assert not late.done()
        assert d.expired(early)
        assert not d.expired(early)  # answered once
        assert not d.expired(answered)
        await asyncio.sleep(0.04)
        assert late.cancelled()
        assert d.expired(late)
        d.prune()
        assert len(d) == 0

    asyncio.run(main())


def test_finished_requests_are_dropped_from_the_head_and_close_stops_the_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        d = Deadlines(0.05)
        futs = [loop.create_future() for _ in range(3)]
        for f in futs:
            d.add(f)
        futs[0].set_result(0)
        futs[2].set_result(2)
        d.prune()
        assert len(d) == 2  # the second is pending, so the third (done) waits behind it
        futs[1].set_result(1)
        d.prune()
        assert len(d) == 0
        pending = loop.create_future()
        d.add(pending)
        d.close()
        await asyncio.sleep(0.08)
        assert not pending.done()

    asyncio.run(main())


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        Deadlines(0)


def test_a_body_read_still_going_at_its_deadline_is_cancelled_and_finished_ones_are_not_kept() -> None:
    from infergate_server.deadlines import ReadDeadlines

    async def main() -> None:
        d = ReadDeadlines(0.05)

        async def read(stall: bool) -> bool:
            watch = d.start()
            try:
                if stall:
                    await asyncio.sleep(10)
                return d.finish(watch)
            except asyncio.CancelledError:
                return d.finish(watch)

        quick = [await read(False) for _ in range(100)]
        assert quick == [False] * 100
        assert len(d) == 0  # a finished read leaves nothing queued behind it
        t0 = asyncio.get_running_loop().time()
        assert await read(True) is True  # cancelled by its deadline, and told so
        assert asyncio.get_running_loop().time() - t0 < 1
        d.close()

    asyncio.run(main())
