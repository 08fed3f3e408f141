"""Shadow traffic: a sample of served requests copied, after they were answered, to a candidate server,
and the candidate's outputs compared with the answer given, by the golden comparator (atol/rtol).

The request path calls `offer` only: a sampling step (every n-th request, exact over time), a token
bucket (config.maxRequestsPerSecond) and a non-blocking put on a bounded queue. What is not taken is
counted (`dropped_rate`, `dropped_queue`) and forgotten: the live answer never waits for, or depends on,
the shadow. Workers on the loop send the copies over HTTP (OIP v2 JSON in, binary tensors out) and count
each outcome (`matched`, `diverged`, `errored`) with the largest absolute error per output.

The copies go through aiohttp, not httpx: measured here, a keep-alive POST with a 384-float answer costs
the sending process ~190 µs of CPU through aiohttp and ~800 µs through httpx, and that CPU is the stable's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import orjson

from .backends.base import Tensor
from .config import ShadowConfig
from .datatypes import OIP_TO_NUMPY, oip_of
from .golden import Comparison, compare_outputs
from .metrics import Metrics

log = logging.getLogger(__name__)
RESULTS = ("matched", "diverged", "errored", "dropped_rate", "dropped_queue")
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""A candidate's answer larger than this is an error, not something to hold in memory."""


class ShadowAnswerError(ValueError):
    """The candidate's answer is not an OIP v2 response this comparison can read."""


def request_body(inputs: Mapping[str, Tensor]) -> bytes:
    """OIP v2 JSON asking for binary outputs (Triton's binary tensor extension): the answer's floats then
    need no parsing, which is most of a copy's cost on this side."""
    entries = []
    for name, arr in inputs.items():
        datatype = oip_of(arr.dtype)
        data: Any = (
            [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.ravel()]
            if datatype == "BYTES"
            else np.ascontiguousarray(arr).ravel()
        )
        entries.append({"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data})
    doc = {"inputs": entries, "parameters": {"binary_data_output": True}}
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def _bytes_elements(chunk: bytes) -> list[bytes]:
    items, at = [], 0
    while at < len(chunk):
        size = int.from_bytes(chunk[at : at + 4], "little")
        items.append(chunk[at + 4 : at + 4 + size])
        at += 4 + size
    return items


def outputs_of(body: bytes, header_length: int | None = None) -> dict[str, Tensor]:
    """The output tensors of an OIP v2 response: JSON `data`, or binary blobs after a JSON header of
    `header_length` bytes (Inference-Header-Content-Length)."""
    try:
        doc = orjson.loads(body if header_length is None else body[:header_length])
        at = len(body) if header_length is None else header_length
        outputs = {}
        for out in doc["outputs"]:
            datatype, shape = out["datatype"], [int(d) for d in out["shape"]]
            dtype = OIP_TO_NUMPY[datatype]
            size = (out.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                chunk = body[at : at + int(size)]
                at += int(size)
                if len(chunk) != int(size):
                    raise ValueError(f"output {out['name']}: binary_data_size {size} past the body")
                if datatype == "BYTES":
                    arr = np.empty(len(_bytes_elements(chunk)), dtype=object)
                    arr[:] = _bytes_elements(chunk)
                else:
                    arr = np.frombuffer(chunk, dtype=dtype)
            elif datatype == "BYTES":
                arr = np.empty(len(out["data"]), dtype=object)
                arr[:] = [str(x).encode("utf-8") for x in out["data"]]
            else:
                arr = np.asarray(out["data"], dtype=dtype)
            outputs[str(out["name"])] = arr.reshape(shape)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ShadowAnswerError(f"not an OIP v2 answer: {type(exc).__name__}: {exc}") from None
    return outputs


@dataclass
class Sampler:
    """Every n-th offer, where n = 100 / samplePercent, spread evenly (an accumulator, no randomness),
    then a token bucket of `rate` per second with a burst of max(1, rate)."""

    percent: float
    rate: float
    clock: Callable[[], float] = time.monotonic
    _credit: float = 0.0
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = max(1.0, self.rate)
        self._at = self.clock()

    def sampled(self) -> bool:
        self._credit += self.percent
        if self._credit < 100.0:
            return False
        self._credit -= 100.0
        return True

    def admit(self) -> bool:
        now = self.clock()
        self._tokens = min(max(1.0, self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole answer, or ShadowAnswerError once it passes `limit` bytes (decompressed)."""
    if response.content_length is not None and response.content_length > limit:
        raise ShadowAnswerError(f"answer of {response.content_length} bytes is over {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ShadowAnswerError(f"answer over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Shadow:
    """One per served model. `offer` is the only call on the request path."""

    def __init__(self, model: str, config: ShadowConfig, metrics: Metrics) -> None:
        self.model = model
        self.config = config
        self.target_model = config.model or model
        self.url = f"{config.target_url.rstrip('/')}/v2/models/{self.target_model}/infer"
        self.sampler = Sampler(config.sample_percent, config.max_requests_per_second)
        self.queue: asyncio.Queue[tuple[Mapping[str, Tensor], Mapping[str, Tensor]]] = asyncio.Queue(
            config.max_queue
        )
        self.counts = dict.fromkeys(RESULTS, 0)
        self.last_problem = ""
        self._results = {r: metrics.shadow_requests.labels(model, r) for r in RESULTS}
        self._abs_error = metrics.shadow_abs_error

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        self._results[result].inc()

    def offer(self, inputs: Mapping[str, Tensor], outputs: Mapping[str, Tensor]) -> None:
        """Hot path, after the answer is settled: copy it to the candidate if sampled, room allowing."""
        if not self.sampler.sampled():
            return
        if not self.sampler.admit():
            self._count("dropped_rate")
            return
        try:
            self.queue.put_nowait((inputs, outputs))
        except asyncio.QueueFull:
            self._count("dropped_queue")

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            workers = [asyncio.create_task(self._work(session)) for _ in range(self.config.concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                for w in workers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await w

    async def _work(self, session: aiohttp.ClientSession) -> None:
        while True:
            inputs, answered = await self.queue.get()
            try:
                await self._compare(session, inputs, answered)
            except Exception as exc:  # a bug here must not end the worker (the live path is unaffected)
                log.exception("shadow comparison failed")
                self.last_problem = f"{type(exc).__name__}: {exc}"
                self._count("errored")

    async def _compare(
        self, session: aiohttp.ClientSession, inputs: Mapping[str, Tensor], answered: Mapping[str, Tensor]
    ) -> None:
        try:
            async with session.post(
                self.url, data=request_body(inputs), headers={"Content-Type": "application/json"}
            ) as response:
                if response.status != 200:
                    raise ShadowAnswerError(f"HTTP {response.status}")
                body = await _read_bounded(response, MAX_ANSWER_BYTES)
                header = response.headers.get("inference-header-content-length")
            got = outputs_of(body, int(header) if header and header.isdigit() else None)
        except (aiohttp.ClientError, TimeoutError, ShadowAnswerError) as exc:
            self.last_problem = f"{type(exc).__name__}: {exc}"[:300]
            self._count("errored")
            return
        result = compare_outputs(answered, got, self.config.atol, self.config.rtol)
        self._record(result)

    def _record(self, result: Comparison) -> None:
        for name, err in result.abs_errors.items():
            self._abs_error.labels(self.model, name).observe(err)
        if result.problems:
            self.last_problem = "; ".join(result.problems)[:300]
            self._count("diverged")
        else:
            self._count("matched")

    def to_json(self) -> dict[str, Any]:
        return {"target": self.url, **self.counts, "lastProblem": self.last_problem}


__all__ = ["RESULTS", "Sampler", "Shadow", "ShadowAnswerError", "outputs_of", "request_body"]
