"""Event-loop CPU per request of the infer path without HTTP: infergate's ASGI app against the lean
reference's, called in-process by concurrent tasks on the tiny example model.

    .venv/bin/python -P bench/loop_cost.py [--requests 20000] [--concurrency 32] [--rounds 3]

Over HTTP on 2 cores the load moves every figure; the loop thread's own CPU time (time.thread_time)
moves far less, so this is how changes to the hot path were compared (bench/RESULTS-server.md). uvicorn's
share (parsing, the two writes) is the same for both servers and is not in these figures; the runtime
thread's is not either.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.lean_server import LeanServer
from bench.serving import MAX_BATCH, THREADS, TINY, TINY_BODY, build

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
BODY = json.dumps(TINY_BODY).encode()


async def _infergate() -> tuple[App, Callable[[], None]]:
    from infergate_server.app import InferGateApp
    from infergate_server.config import ServerConfig

    doc = yaml.safe_load((TINY / "server.yaml").read_text())
    doc["model"]["path"] = str(TINY / doc["model"]["path"])
    doc["runtime"]["batching"] = {"maxBatchSize": MAX_BATCH, "maxQueueDelayMs": 0}
    doc["runtime"]["maxQueueDepth"] = 128
    doc["runtime"]["threads"] = {"intraOp": THREADS, "interOp": 1}
    doc["server"]["logLevel"] = "warning"
    app = InferGateApp(ServerConfig.model_validate(doc))
    await app.model.start()  # what the lifespan's start task does first (verify, load, golden)
    assert app.model.ready, app.model.reason
    gc.collect()  # and then, as the server does once the model is ready
    gc.freeze()
    return app.asgi, lambda: None


async def _lean() -> tuple[App, Callable[[], None]]:
    app = LeanServer(THREADS, TINY / "model/model.onnx", "y")
    worker = asyncio.create_task(app._work())  # what its lifespan starts

    def stop() -> None:
        worker.cancel()

    return app, stop


async def loop_cpu_us(which: str, requests: int, concurrency: int) -> float:
    """Loop-thread CPU µs per request, after a warm-up; every answer must be 200."""
    app, stop = await (_infergate() if which == "infergate" else _lean())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/tiny/infer",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def client(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    await asyncio.gather(*(client(50) for _ in range(concurrency)))
    statuses.clear()
    cpu = time.thread_time()
    await asyncio.gather(*(client(requests // concurrency) for _ in range(concurrency)))
    cpu = time.thread_time() - cpu
    stop()
    assert set(statuses) == {200}, set(statuses)
    return cpu / len(statuses) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", choices=("infergate", "lean"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # each measurement in a fresh process: neither side inherits the other's heap or threads
        print(uvloop.run(loop_cpu_us(a.one, a.requests, a.concurrency)))
        return
    import subprocess

    build()
    got: dict[str, list[float]] = {"infergate": [], "lean": []}
    for _ in range(a.rounds):
        for which in got:
            cmd = [sys.executable, "-P", __file__, "--one", which, "--requests", str(a.requests)]
            out = subprocess.run(
                [*cmd, "--concurrency", str(a.concurrency)], capture_output=True, text=True, check=True
            )
            got[which].append(float(out.stdout.strip().splitlines()[-1]))
    inf, lean = statistics.median(got["infergate"]), statistics.median(got["lean"])
    print(
        f"loop CPU per request (median of {a.rounds}): infergate {inf:.1f} µs, lean reference {lean:.1f} µs"
    )
    print(f"loop_cost: infergate_us={inf:.1f} lean_us={lean:.1f}")


if __name__ == "__main__":
    main()
