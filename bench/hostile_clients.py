"""Hostile clients and a /healthz prober for bench/hostile.py, each run as its own process on 127.0.0.1.

    .venv/bin/python -P bench/hostile_clients.py hostile PORT SECONDS   # prints one JSON line of counts
    .venv/bin/python -P bench/hostile_clients.py probe PORT SECONDS     # prints /healthz latencies

The hostile mix, all at once, for SECONDS (every loop bounded by that deadline):
- slow headers: SLOW_HEADERS connections sending a request line, then a header byte a second (reopened
  when the server closes them at server.headerTimeoutSeconds);
- slow bodies: SLOW_BODIES connections announcing a 1 MiB body and sending 100 B a second;
- huge headers: requests whose headers are 256 KiB (4 x server.maxHeaderBytes), ~10 a second on each
  of two connections;
- amplification attempts, ~10 a second each on a kept-alive connection: 200 copies of the output in
  `outputs`, 2000 rows (maxBatchSize is 16), a 100 kB string among INT64 ids, a 100 kB text (over
  runtime.tokenizer.maxTextBytes).
The counts say what the server answered (status classes, closes), so a 5xx would show.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from collections.abc import Awaitable, Callable

import orjson

SLOW_HEADERS = 100
SLOW_BODIES = 40
INFER = "/v2/models/minilm-l3/infer"

counts: collections.Counter[str] = collections.Counter()


def _amplifiers() -> list[bytes]:
    ids = {"name": "input_ids", "shape": [1, 16], "datatype": "INT64", "data": [101] * 16}
    mask = {"name": "attention_mask", "shape": [1, 16], "datatype": "INT64", "data": [1] * 16}
    rows = 2_000
    many = [
        {**ids, "shape": [rows, 16], "data": [101] * (rows * 16)},
        {**mask, "shape": [rows, 16], "data": [1] * (rows * 16)},
    ]
    docs = [
        {"inputs": [ids, mask], "outputs": [{"name": "461"}] * 200},
        {"inputs": many},
        {"inputs": [{**ids, "data": [101] * 15 + ["x" * 100_000]}, mask]},  # a string among numbers
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["word " * 20_000]}]},
    ]
    return [orjson.dumps(d) for d in docs]


def _request(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (INFER.encode(), len(body), extra, body)
    )


async def _status(reader: asyncio.StreamReader) -> int:
    """Reads one response; its status (0 when the server closed instead)."""
    line = await reader.readline()
    if not line:
        return 0
    status = int(line.split()[1])
    length = 0
    while (h := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    await reader.readexactly(length)
    return status


async def _forever(deadline: float, what: str, step: Callable[[], Awaitable[None]]) -> None:
    while time.monotonic() < deadline:
        try:
            await step()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            counts[f"{what}: closed"] += 1
            await asyncio.sleep(0.05)


async def slow_headers(port: int, deadline: float) -> None:
    async def step() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        counts["slow headers: opened"] += 1
        writer.write(b"POST %s HTTP/1.1\r\nx-slow: " % INFER.encode())
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                if reader.at_eof():
                    raise ConnectionResetError
                writer.write(b"a")
                await writer.drain()
        finally:
            writer.close()

    await _forever(deadline, "slow headers", step)


async def slow_bodies(port: int, deadline: float) -> None:
    async def step() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        counts["slow bodies: opened"] += 1
        head = _request(b"")
        writer.write(head.replace(b"content-length: 0", b"content-length: %d" % (1 << 20)))
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                if reader.at_eof():  # answered (408 at server.bodyTimeoutSeconds) and closed
                    counts[f"slow bodies: {await _status(reader)}"] += 1
                    return
                writer.write(b"1" * 100)
                await writer.drain()
        finally:
            writer.close()

    await _forever(deadline, "slow bodies", step)


async def huge_headers(port: int, deadline: float) -> None:
    big = b"".join(b"x-big-%d: %s\r\n" % (i, b"a" * 8000) for i in range(32))  # 256 KiB

    async def step() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(_request(b"{}", big))
            await writer.drain()
            counts[f"huge headers: {await _status(reader)}"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.1)

    await _forever(deadline, "huge headers", step)


async def amplification(port: int, deadline: float, body: bytes, label: str) -> None:
    async def step() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(_request(body))
                await writer.drain()
                status = await _status(reader)
                counts[f"{label}: {status}"] += 1
                if status == 0:
                    return
                await asyncio.sleep(0.1)
        finally:
            writer.close()

    await _forever(deadline, label, step)


async def hostile(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    names = ["duplicate outputs", "rows over maxBatchSize", "string among INT64", "text over maxTextBytes"]
    tasks = [slow_headers(port, deadline) for _ in range(SLOW_HEADERS)]
    tasks += [slow_bodies(port, deadline) for _ in range(SLOW_BODIES)]
    tasks += [huge_headers(port, deadline) for _ in range(2)]
    tasks += [amplification(port, deadline, b, n) for b, n in zip(_amplifiers(), names, strict=True)]
    await asyncio.gather(*tasks)
    print(json.dumps(dict(sorted(counts.items()))))


async def probe(port: int, seconds: float) -> None:
    """GET /healthz every 20 ms on one kept-alive connection; latencies in ms."""
    deadline = time.monotonic() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    took: list[float] = []
    errors = 0
    while time.monotonic() < deadline:
        t = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            status = await asyncio.wait_for(_status(reader), 5)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            status = 0
        took.append((time.perf_counter() - t) * 1e3)
        if status != 200:
            errors += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.02)
    writer.close()
    took.sort()
    print(
        json.dumps(
            {
                "n": len(took),
                "errors": errors,
                "p50_ms": took[len(took) // 2],
                "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))],
                "max_ms": took[-1],
            }
        )
    )


def main() -> None:
    mode, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    asyncio.run(hostile(port, seconds) if mode == "hostile" else probe(port, seconds))


if __name__ == "__main__":
    main()
