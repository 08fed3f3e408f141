"""A lean reference server for bench/server.py: the least an HTTP model server in Python does per request.

    .venv/bin/python -P bench/lean_server.py PORT [THREADS [MODEL.onnx [OUTPUT [TOKENIZER.json]]]]

It measures the host, not infergate: uvicorn with the same loop and parser, orjson both ways, greedy
batches of up to MAX_BATCH on one ONNX Runtime thread pool with the benchmark's session options, and
nothing else (no input contract, limits, metrics, timeouts or readiness). It serves any ONNX model
whose inputs all share the batch dimension (MiniLM-L3 by default); the reply holds OUTPUT (for MiniLM-L3
"461", the pooled embedding infergate's example serves; the model's first output, "output", only echoes
the ids, and a reply of 16 ids instead of 384 floats made the reference look cheaper than it is).
With a tokenizer it also takes the text form as infergate does (one BYTES `text` tensor per request; a
batch of texts is tokenized at once, padded to its longest, into input_ids and attention_mask).
Whatever served ÷ raw it reaches is what any Python server with batching can reach on this host;
infergate ÷ lean is then the cost of everything infergate does beyond that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.serving import MAX_BATCH, MODEL, THREADS, raw_session

# (tensors, or None for the text form; texts; the caller's future)
Request = tuple[dict[str, np.ndarray] | None, list[str], "asyncio.Future[np.ndarray]"]
_NUMPY = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(int32)": np.int32}


class LeanServer:
    def __init__(self, threads: int, model: Path, output: str, tokenizer: Path | None = None) -> None:
        self._session = raw_session(threads, model)
        self._tok: Any = None
        if tokenizer is not None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(tokenizer))
            self._tok.enable_truncation(max_length=128)
            self._tok.enable_padding()
        self._dtypes = {i.name: _NUMPY[i.type] for i in self._session.get_inputs()}
        self._output = output
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._queue: list[Request] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        (out,) = self._session.run([self._output], feed)
        return np.asarray(out)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            text = self._queue[0][0] is None
            n = 1
            while n < min(MAX_BATCH, len(self._queue)) and (self._queue[n][0] is None) == text:
                n += 1
            batch, self._queue = self._queue[:n], self._queue[n:]
            if text:
                encs = self._tok.encode_batch([t for r in batch for t in r[1]])
                feed = {
                    "input_ids": np.array([e.ids for e in encs], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
                }
            else:
                feed = {name: np.concatenate([r[0][name] for r in batch if r[0]]) for name in self._dtypes}
            out = await loop.run_in_executor(self._executor, self._run, feed)
            for i, (_, _, fut) in enumerate(batch):
                fut.set_result(out[i : i + 1])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                self._worker = asyncio.create_task(self._work())
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":  # readiness, for the benchmark's wait
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        inputs = orjson.loads(body)["inputs"]
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        if inputs[0]["name"] == "text":
            self._queue.append((None, inputs[0]["data"], fut))
        else:
            tensors = {
                t["name"]: np.array(t["data"], dtype=self._dtypes[t["name"]]).reshape(t["shape"])
                for t in inputs
            }
            self._queue.append((tensors, [], fut))
        self._arrived.set()
        out = await fut
        doc = {
            "model_name": "minilm-l3",
            "outputs": [
                {"name": self._output, "shape": list(out.shape), "datatype": "FP32", "data": out.ravel()}
            ],
        }
        content = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def main() -> None:
    port = int(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else THREADS
    model = Path(sys.argv[3]) if len(sys.argv) > 3 else MODEL
    output = sys.argv[4] if len(sys.argv) > 4 else "461"
    tokenizer = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    uvicorn.run(
        LeanServer(threads, model, output, tokenizer),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        interface="asgi3",
        access_log=False,
        server_header=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
