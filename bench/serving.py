"""What the server benchmarks start and compare: the example models, raw in-process ONNX Runtime, and server
processes (infergate, bench/lean_server.py, KServe) on 127.0.0.1, each stopped by its own pid on exit.

bench/server.py, bench/tenancy.py and bench/hostile.py share these; bench/load.py drives them.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import build_models  # noqa: E402

EXAMPLE = REPO / "examples" / "models" / "minilm-l3-onnx"
TINY = REPO / "examples" / "models" / "tiny-onnx"
MODEL = EXAMPLE / "model" / "model.onnx"
TOKENIZER = EXAMPLE / "model" / "tokenizer.json"
KSERVE_PY = Path(os.environ.get("KSERVE_VENV", Path.home() / ".cache/infergate/kserve-venv")) / "bin/python"
IDS = [101, 1999, 7512, 5867, 4240, 1037, 2944, 2069, 2044, 2049, 3585, 20407, 3413, 1012, 2065, 102]
TEXT = "infergate serves a model only after its golden inputs pass, and."  # 16 tokens with [CLS]/[SEP]
MAX_BATCH = 16
THREADS = 2

TENSOR_BODY = {
    "inputs": [
        {"name": "input_ids", "shape": [1, 16], "datatype": "INT64", "data": IDS},
        {"name": "attention_mask", "shape": [1, 16], "datatype": "INT64", "data": [1] * 16},
    ]
}
TEXT_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}]}
TINY_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_session(threads: int = THREADS, model: Path = MODEL) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()  # the same options the server's backend sets
    so.use_deterministic_compute = True
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def time_loop(fn: Callable[[], None], duration: float) -> list[float]:
    """Seconds per call of `fn`, called back to back for `duration` seconds after 5 warm-up calls."""
    for _ in range(5):
        fn()
    times = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - t0
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout}s")


@contextmanager
def process(
    cmd: list[str], port: int, ready_path: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process, its output discarded, until `ready_path` answers 200; stopped on exit."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{ready_path}", proc)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


@contextmanager
def infergate(
    tmp: Path,
    max_batch: int,
    queue: int = 128,
    example: Path = EXAMPLE,
    runtime: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Iterator[tuple[str, float, int]]:
    """`infergate-server serve` on the example's server.yaml with the benchmark's batching, queue and
    threads; `runtime` and `extra` (merged into the whole document: tenancy, server limits) on top.
    Yields (url, seconds from start to ready, pid)."""
    doc = yaml.safe_load((example / "server.yaml").read_text())
    doc["model"]["path"] = str(example / doc["model"]["path"])
    if "tokenizer" in doc["runtime"]:
        doc["runtime"]["tokenizer"]["path"] = str(example / doc["runtime"]["tokenizer"]["path"])
    doc["runtime"]["batching"] = {"maxBatchSize": max_batch, "maxQueueDelayMs": 0}
    doc["runtime"]["maxQueueDepth"] = queue
    doc["runtime"]["threads"] = {"intraOp": THREADS, "interOp": 1}
    doc["server"]["logLevel"] = "warning"
    doc["runtime"].update(runtime or {})
    _merge(doc, extra or {})
    port = free_port()
    cfg = tmp / f"server-{example.name}-{max_batch}-{port}.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    t0 = time.perf_counter()
    cmd = [str(REPO / ".venv/bin/infergate-server"), "serve", "--config", str(cfg), "--port", str(port)]
    with process(cmd, port, "/readyz") as proc:
        yield f"http://127.0.0.1:{port}", time.perf_counter() - t0, proc.pid


@contextmanager
def kserve(model: Path = MODEL, name: str = "minilm-l3", output: str = "461") -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "MODEL_PATH": str(model),
        "PORT": str(port),
        "THREADS": str(THREADS),
        "NAME": name,
        "OUTPUT": output,
    }
    with process(
        [str(KSERVE_PY), "-P", str(REPO / "bench/kserve_model.py")], port, f"/v2/models/{name}/ready", env
    ):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def lean(
    threads: int = THREADS, model: Path = MODEL, output: str = "461", tokenizer: Path | None = None
) -> Iterator[str]:
    """bench/lean_server.py: the host's reference, the least a Python server with batching does, answering
    with `output` (what infergate's example serves); with `tokenizer` it also takes the text form (a
    BYTES `text` tensor, tokenized per batch)."""
    port = free_port()
    lean_py = str(REPO / "bench/lean_server.py")
    cmd = [sys.executable, "-P", lean_py, str(port), str(threads), str(model), output]
    if tokenizer is not None:
        cmd.append(str(tokenizer))
    with process(cmd, port, "/"):
        yield f"http://127.0.0.1:{port}"


def build() -> None:
    build_models.build("minilm-l3-onnx")
    build_models.build("tiny-onnx")


def paired_round_args() -> argparse.ArgumentParser:
    """The arguments every paired-round server benchmark takes (bench/server.py, tenancy.py, hostile.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per side per round")
    ap.add_argument("--runs", type=int, default=3, help="paired rounds (the figures are their medians)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-server.md")
    ap.add_argument("--host-note", default="", help="what else ran on the host, for the table")
    return ap
