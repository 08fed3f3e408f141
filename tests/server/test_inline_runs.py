"""When nothing else is queued or running, a short ONNX Runtime call runs on the event loop's thread;
otherwise it goes to the runtime's worker thread. A real ServedModel on the tiny example, with the real
OnnxRuntimeBackend, whose two paths are recorded."""

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from infergate_server.backends.base import BackendError
from infergate_server.backends.onnxruntime import OnnxRuntimeBackend
from infergate_server.batching import Batcher
from infergate_server.config import ServerConfig
from infergate_server.metrics import Metrics
from infergate_server.model import ServedModel
from infergate_server.protocol import InferRequest

from .conftest import example_config


class RecordingOrt(OnnxRuntimeBackend):
    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.paths: list[str] = []

    def infer_inline(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        out = super().infer_inline(inputs)
        if out is not None:
            self.paths.append("inline")
        return out

    async def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self.paths.append("worker")
        return await super().infer(inputs)


def _model(
    tiny_example: Path, tmp_path: Path, args: dict[str, Any] | None = None
) -> tuple[ServedModel, RecordingOrt]:
    overrides = {"runtime": {"batching": {"maxBatchSize": 1}, "args": args or {}}}
    cfg = ServerConfig.from_yaml(example_config(tiny_example, tmp_path, overrides))
    backend = RecordingOrt(cfg)
    return ServedModel(cfg, Metrics(), backend=backend), backend


def _request(value: float) -> InferRequest:
    return InferRequest({"x": np.full((1, 4), value, np.float32)}, None, False)


def _serve_then(model: ServedModel, backend: RecordingOrt, burst: int) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        await model.start()
        assert model.ready, model.reason
        backend.paths.clear()  # the golden cases' calls (they go straight to the worker)
        try:
            out = await asyncio.gather(*(model.infer(_request(i)) for i in range(burst)))
            return [*out, await model.infer(_request(burst))]  # and one more, alone again
        finally:
            await model.stop()

    return asyncio.run(main())


def test_a_lone_request_runs_inline_and_a_queue_goes_to_the_worker(
    tiny_example: Path, tmp_path: Path
) -> None:
    model, backend = _model(tiny_example, tmp_path)
    alone = _serve_then(model, backend, 1)
    assert backend.paths == ["inline", "inline"]
    model, backend = _model(tiny_example, tmp_path)
    burst = _serve_then(model, backend, 3)
    # maxBatchSize 1: each of the three has a request queued or a batch in flight beside it; the
    # fourth, sent after them, is alone
    assert backend.paths == ["worker", "worker", "worker", "inline"]
    sess_out = [r["y"] for r in burst]
    np.testing.assert_allclose(alone[0]["y"], sess_out[0], rtol=1e-6)
    assert not np.allclose(sess_out[0], sess_out[2])


@pytest.mark.parametrize(
    "args",
    [{"inlineMaxMs": 0}, {"debugDelayMs": 1, "debugDelayAfterCalls": 100}],
    ids=["budget-0", "debug-delay"],
)
def test_inline_is_declined_when_disabled_or_when_calls_may_hang(
    tiny_example: Path, tmp_path: Path, args: dict[str, Any]
) -> None:
    model, backend = _model(tiny_example, tmp_path, args)
    _serve_then(model, backend, 1)
    assert backend.paths == ["worker", "worker"]


def test_inline_is_declined_before_load_and_once_calls_run_long(tiny_example: Path, tmp_path: Path) -> None:
    cfg = ServerConfig.from_yaml(
        example_config(tiny_example, tmp_path, {"runtime": {"args": {"inlineMaxMs": 50}}})
    )
    backend = OnnxRuntimeBackend(cfg)
    x = {"x": np.ones((1, 4), np.float32)}
    assert backend.infer_inline(x) is None
    asyncio.run(backend.load())
    assert backend.infer_inline(x) is not None
    backend._recent_call_s = 0.2  # as if the last calls took 200 ms (a long-sequence batch, a slow host)
    assert backend.infer_inline(x) is None


def test_the_batcher_is_alone_only_with_one_batch_running_and_nothing_queued() -> None:
    async def main() -> None:
        seen: list[bool] = []
        gate = asyncio.Event()
        b: Batcher[int, int] = Batcher(
            lambda ps: _record(ps, seen, gate, b), max_batch_size=1, max_queue_depth=10
        )
        b.start()
        first = b.submit(0, 1)
        await asyncio.sleep(0)
        second = b.submit(1, 1)  # a full batch (1 row): handed over while the first runs
        gate.set()
        await asyncio.gather(first, second)
        # the first is alone until the second is handed over behind it; the second once the first is done
        assert seen == [True, False, False, True]
        assert b.running_batches == 0
        await b.stop()

    asyncio.run(main())


async def _record(ps: Any, seen: list[bool], gate: asyncio.Event, b: Batcher[int, int]) -> list[int]:
    seen.append(b.alone())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    seen.append(b.alone())
    await gate.wait()
    return list(ps)


@pytest.mark.parametrize("value", ["fast", -1, True])
def test_a_bad_inline_budget_is_refused_naming_the_field(
    tiny_example: Path, tmp_path: Path, value: Any
) -> None:
    cfg = ServerConfig.from_yaml(
        example_config(tiny_example, tmp_path, {"runtime": {"args": {"inlineMaxMs": value}}})
    )
    with pytest.raises(BackendError, match=r"runtime\.args\.inlineMaxMs must be a number >= 0"):
        OnnxRuntimeBackend(cfg)


def test_inline_is_decided_by_this_calls_size_not_only_the_average(
    tiny_example: Path, tmp_path: Path
) -> None:
    cfg = ServerConfig.from_yaml(example_config(tiny_example, tmp_path))
    backend = OnnxRuntimeBackend(cfg)
    asyncio.run(backend.load())
    small = {"x": np.ones((1, 4), np.float32)}
    for _ in range(5):
        assert backend.infer_inline(small) is not None
    backend._recent_call_s = 0.001  # recent one-row calls took 1 ms, under the 3 ms budget
    # One request of 100 000 rows would take far longer than its predecessors: the worker thread runs it.
    assert backend.infer_inline({"x": np.ones((100_000, 4), np.float32)}) is None
    assert backend.infer_inline(small) is not None
