"""The batcher on a real event loop (asyncio.run), with a fake monotonic clock where time matters."""

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from infergate_server.batching import Batcher, BatchLengthMismatch
from infergate_server.errors import QueueFull


class Recorder:
    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    async def __call__(self, payloads: Sequence[int]) -> list[int]:
        self.batches.append(list(payloads))
        if self.gate is not None:
            await self.gate.wait()
        if any(p < 0 for p in payloads):
            raise ValueError(f"negative payload in {list(payloads)}")
        return [p * 10 for p in payloads]


def test_greedy_takes_everything_queued_up_to_max() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=4, max_queue_depth=100)
        b.start()
        first = b.submit(0, 1)
        await asyncio.sleep(0)  # the worker takes [0] alone and blocks on the gate
        await asyncio.sleep(0)
        rest = [b.submit(i, 1) for i in range(1, 7)]
        gate.set()
        results = await asyncio.gather(first, *rest)
        assert results == [i * 10 for i in range(7)]
        assert rec.batches == [[0], [1, 2, 3, 4], [5, 6]]
        await b.stop()

    asyncio.run(main())


def test_zero_delay_never_waits_for_a_batch_to_fill() -> None:
    async def main() -> None:
        rec = Recorder()
        b: Batcher[int, int] = Batcher(rec, max_batch_size=8, max_queue_delay_s=0.0, max_queue_depth=10)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await b.submit(1, 1) == 10
        assert loop.time() - t0 < 0.5
        assert rec.batches == [[1]]
        await b.stop()

    asyncio.run(main())


def test_delay_waits_until_full_batch_then_runs_at_once() -> None:
    async def main() -> None:
        now = [100.0]
        rec = Recorder()
        b: Batcher[int, int] = Batcher(
            rec, max_batch_size=3, max_queue_delay_s=3600.0, max_queue_depth=10, clock=lambda: now[0]
        )
        b.start()
        futs = [b.submit(1, 1)]
        await asyncio.sleep(0.01)
        assert rec.batches == []  # waiting: 1 of 3 rows, the hour-long delay has not passed
        futs += [b.submit(2, 1), b.submit(3, 1)]
        assert await asyncio.gather(*futs) == [10, 20, 30]
        assert rec.batches == [[1, 2, 3]]
        await b.stop()

    asyncio.run(main())


def test_delay_runs_partial_batch_once_the_injected_clock_passes_the_deadline() -> None:
    async def main() -> None:
        now = [0.0]
        rec = Recorder()
        b: Batcher[int, int] = Batcher(
            rec, max_batch_size=8, max_queue_delay_s=0.5, max_queue_depth=10, clock=lambda: now[0]
        )
        b.start()
        fut = b.submit(7, 1)
        now[0] = 1.0  # past the deadline: the next wake-up runs the partial batch
        b.submit(8, 1)
        assert await fut == 70
        assert rec.batches == [[7, 8]]
        await b.stop()

    asyncio.run(main())


def test_requests_with_different_keys_are_never_mixed() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=8, max_queue_depth=10)
        b.start()
        futs = [b.submit(0, 1, key="a")]
        await asyncio.sleep(0)
        futs += [b.submit(1, 1, key="a"), b.submit(2, 1, key="b"), b.submit(3, 1, key="a")]
        gate.set()
        await asyncio.gather(*futs)
        assert rec.batches == [[0], [1, 3], [2]]
        await b.stop()

    asyncio.run(main())


def test_rows_count_towards_max_batch_size() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=4, max_queue_depth=10)
        b.start()
        futs = [b.submit(0, 1)]
        await asyncio.sleep(0)
        futs += [b.submit(1, 3), b.submit(2, 2), b.submit(3, 1)]
        gate.set()
        await asyncio.gather(*futs)
        assert rec.batches == [[0], [1, 3], [2]]
        await b.stop()

    asyncio.run(main())


def test_full_queue_refuses_at_once() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        b: Batcher[int, int] = Batcher(Recorder(gate), max_batch_size=1, max_queue_depth=2)
        b.start()
        running = b.submit(0, 1)
        await asyncio.sleep(0)
        queued = [b.submit(1, 1), b.submit(2, 1)]
        assert b.depth == 2
        assert not b.has_room()
        with pytest.raises(QueueFull, match="queue full"):
            b.submit(3, 1)
        gate.set()
        await asyncio.gather(running, *queued)
        await b.stop()

    asyncio.run(main())


def test_a_withdrawn_request_leaves_the_queue_at_once_and_never_runs() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=4, max_queue_depth=2)
        b.start()
        running = b.submit(0, 1)
        await asyncio.sleep(0)  # [0] runs and blocks on the gate
        gone, kept = b.submit(1, 1), b.submit(2, 1)
        assert not b.has_room()
        gone.cancel()
        b.withdraw(gone)
        assert b.depth == 1
        assert b.has_room()
        b.withdraw(gone)  # twice, or for a request already taken: nothing happens
        b.withdraw(running)
        late = b.submit(3, 1)
        gate.set()
        assert await asyncio.gather(running, kept, late) == [0, 20, 30]
        assert rec.batches == [[0], [2, 3]]
        await b.stop()

    asyncio.run(main())


def test_a_bad_request_never_fails_its_batch_mates() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=8, max_queue_depth=10)
        b.start()
        first = b.submit(0, 1)
        await asyncio.sleep(0)
        mates = [b.submit(1, 1), b.submit(-1, 1), b.submit(2, 1)]
        gate.set()
        results = await asyncio.gather(first, *mates, return_exceptions=True)
        assert results[:2] == [0, 10]
        assert results[3] == 20
        assert isinstance(results[2], ValueError)
        assert rec.batches[1] == [1, -1, 2]  # the batch failed, then each ran alone
        await b.stop()

    asyncio.run(main())


def test_a_result_count_mismatch_fails_with_both_sizes() -> None:
    async def short(payloads: Sequence[int]) -> list[int]:
        return [1]

    async def main() -> None:
        b: Batcher[int, int] = Batcher(short, max_batch_size=1, max_queue_depth=4)
        b.start()
        ok = await b.submit(5, 1)
        assert ok == 1

        async def empty(payloads: Sequence[int]) -> list[int]:
            return []

        b2: Batcher[int, int] = Batcher(empty, max_batch_size=1, max_queue_depth=4)
        b2.start()
        with pytest.raises(BatchLengthMismatch, match="0 results for 1 requests"):
            await b2.submit(5, 1)
        await b.stop()
        await b2.stop()

    asyncio.run(main())


def test_a_timed_out_request_leaves_the_queue() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        b: Batcher[int, int] = Batcher(Recorder(gate), max_batch_size=1, max_queue_depth=4)
        b.start()
        running = b.submit(0, 1)
        await asyncio.sleep(0)
        waiting = b.submit(1, 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiting, 0.01)
        assert b.depth == 0
        gate.set()
        await running
        await b.stop()

    asyncio.run(main())


def test_arguments_are_checked_at_construction() -> None:
    async def run(p: Sequence[int]) -> list[int]:
        return list(p)

    with pytest.raises(ValueError, match="max_batch_size must be >= 1, got 0"):
        Batcher(run, max_batch_size=0, max_queue_depth=1)
    with pytest.raises(ValueError, match="max_queue_delay_s"):
        Batcher(run, max_batch_size=1, max_queue_delay_s=-1, max_queue_depth=1)


def test_one_full_batch_is_handed_over_ahead_while_another_runs() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(rec, max_batch_size=2, max_queue_depth=10)
        b.start()

        async def settle() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        futs = [b.submit(0, 1)]
        await settle()
        assert rec.batches == [[0]]  # running (held at the gate)
        futs.append(b.submit(1, 1))
        await settle()
        assert rec.batches == [[0]]  # a partial batch waits: it may still grow
        futs.append(b.submit(2, 1))
        await settle()
        assert rec.batches == [[0], [1, 2]]  # full: staged behind the running one
        futs += [b.submit(3, 1), b.submit(4, 1)]
        await settle()
        assert rec.batches == [[0], [1, 2]]  # at most one staged
        assert b.running_batches == 2
        gate.set()
        assert await asyncio.gather(*futs) == [0, 10, 20, 30, 40]
        assert rec.batches == [[0], [1, 2], [3, 4]]
        await b.stop()

    asyncio.run(main())


def test_busy_time_counts_overlapping_batches_once() -> None:
    async def main() -> None:
        now = [0.0]
        busy: list[float] = []
        gate = asyncio.Event()
        rec = Recorder(gate)
        b: Batcher[int, int] = Batcher(
            rec,
            max_batch_size=1,
            max_queue_depth=10,
            max_concurrent_batches=2,
            clock=lambda: now[0],
            on_busy=busy.append,
        )
        b.start()
        first = b.submit(1, 1)
        await asyncio.sleep(0)
        now[0] = 1.0
        second = b.submit(2, 1)  # overlaps the first
        for _ in range(3):
            await asyncio.sleep(0)
        now[0] = 3.0
        gate.set()
        assert await asyncio.gather(first, second) == [10, 20]
        assert busy == [3.0]  # 0 → 3 s with one or two batches running, not 3 + 2
        await b.stop()

    asyncio.run(main())


def test_gpus_allocated_from_the_device_plugins_env(tmp_path: Path) -> None:
    from infergate_server.gpus import gpus_allocated

    assert gpus_allocated({}) == 0
    assert gpus_allocated({"NVIDIA_VISIBLE_DEVICES": "void"}) == 0
    assert gpus_allocated({"NVIDIA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}) == 2
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert gpus_allocated({"NVIDIA_VISIBLE_DEVICES": "all"}, dev=tmp_path) == 2
