"""Benchmark of the model server on the MiniLM-L3 ONNX example (issue 5's Benchmark section).

    bench/setup.sh                      # wrk (Debian), oha (crates.io), a separate KServe virtualenv
    .venv/bin/python -P bench/server.py [--duration 10] [--runs 3] [--out bench/RESULTS-server.md]

Same box, same model, same ONNX Runtime threads side by side. Every server runs as its own process and
is driven by a load generator in another process (wrk with bench/oip.lua for closed-loop runs; the
open-loop overload run uses oha at a fixed rate, because wrk cannot send on a schedule). Each figure is the
median of --runs runs of --duration seconds after a warm-up. Inputs: 16 INT64 token ids (+ mask), and a
BYTES text of the same 16 tokens tokenized server-side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import build_models  # noqa: E402

EXAMPLE = REPO / "examples" / "models" / "minilm-l3-onnx"
MODEL = EXAMPLE / "model" / "model.onnx"
TOKENIZER = EXAMPLE / "model" / "tokenizer.json"
KSERVE_PY = Path(os.environ.get("KSERVE_VENV", Path.home() / ".cache/infergate/kserve-venv")) / "bin/python"
_PINS = dict(
    line.strip().split("=", 1)
    for line in (REPO / "bench/versions.env").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
)
# bench/setup.sh builds it
OHA = Path.home() / f".cache/infergate/bench-tools/oha-{_PINS['OHA_VERSION']}/bin/oha"
IDS = [101, 1999, 7512, 5867, 4240, 1037, 2944, 2069, 2044, 2049, 3585, 20407, 3413, 1012, 2065, 102]
TEXT = "infergate serves a model only after its golden inputs pass, and."  # 16 tokens with [CLS]/[SEP]
MAX_BATCH = 16
THREADS = 2


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- raw in-process ONNX Runtime -------------------------------------------------------------------


def raw_session(threads: int = THREADS, model: Path = MODEL) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()  # the same options the server's backend sets
    so.use_deterministic_compute = True
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def _time_loop(fn: Callable[[], None], duration: float) -> list[float]:
    for _ in range(5):
        fn()
    times = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def raw_figures(duration: float, runs: int) -> dict[str, float]:
    from tokenizers import Tokenizer

    sess = raw_session()
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.enable_padding()
    ids = np.array([IDS], dtype=np.int64)

    def tensor(n: int) -> Callable[[], None]:
        feed = {"input_ids": np.repeat(ids, n, 0), "attention_mask": np.ones((n, len(IDS)), np.int64)}
        return lambda: sess.run(["461"], feed)

    def text(n: int) -> Callable[[], None]:
        texts = [TEXT] * n

        def run() -> None:
            encs = tok.encode_batch(texts)
            sess.run(
                ["461"],
                {
                    "input_ids": np.array([e.ids for e in encs], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
                },
            )

        return run

    out: dict[str, float] = {}
    for kind, make in (("tensor", tensor), ("text", text)):
        batched = [
            MAX_BATCH * len(t) / sum(t) for t in (_time_loop(make(MAX_BATCH), duration) for _ in range(runs))
        ]
        single = [_time_loop(make(1), duration) for _ in range(runs)]
        out[f"{kind}_rows_per_s"] = statistics.median(batched)
        out[f"{kind}_b1_p50_ms"] = statistics.median(float(np.percentile(s, 50)) * 1e3 for s in single)
        out[f"{kind}_b1_p99_ms"] = statistics.median(float(np.percentile(s, 99)) * 1e3 for s in single)
    return out


# ---- servers ---------------------------------------------------------------------------------------


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
def infergate(
    tmp: Path,
    max_batch: int,
    queue: int = 128,
    example: Path = EXAMPLE,
    runtime: dict[str, Any] | None = None,
) -> Iterator[tuple[str, float, int]]:
    doc = yaml.safe_load((example / "server.yaml").read_text())
    doc["model"]["path"] = str(example / doc["model"]["path"])
    if "tokenizer" in doc["runtime"]:
        doc["runtime"]["tokenizer"]["path"] = str(example / doc["runtime"]["tokenizer"]["path"])
    doc["runtime"]["batching"] = {"maxBatchSize": max_batch, "maxQueueDelayMs": 0}
    doc["runtime"]["maxQueueDepth"] = queue
    doc["runtime"]["threads"] = {"intraOp": THREADS, "interOp": 1}
    doc["server"]["logLevel"] = "warning"
    doc["runtime"].update(runtime or {})
    cfg = tmp / f"server-{example.name}-{max_batch}-{free_port()}.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    port = free_port()
    t0 = time.perf_counter()
    cmd = [str(REPO / ".venv/bin/infergate-server"), "serve", "--config", str(cfg), "--port", str(port)]
    with _process(cmd, port, "/readyz") as proc:
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
    with _process(
        [str(KSERVE_PY), "-P", str(REPO / "bench/kserve_model.py")], port, f"/v2/models/{name}/ready", env
    ):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def lean(threads: int = THREADS, model: Path = MODEL) -> Iterator[str]:
    """bench/lean_server.py: the host's reference, the least a Python server with batching does."""
    port = free_port()
    cmd = [sys.executable, "-P", str(REPO / "bench/lean_server.py"), str(port), str(threads), str(model)]
    with _process(cmd, port, "/"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _process(
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


def wrk(url: str, body: Path, conns: int, duration: float, name: str = "minilm-l3") -> dict[str, Any]:
    # No per-status counts (COUNT_STATUS): a Lua call per response costs wrk CPU the server would get;
    # wrk's own non-2xx count (errors_status) is enough for closed-loop runs.
    env = {**os.environ, "BODY": str(body), "PATH_INFER": f"/v2/models/{name}/infer"}
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(REPO / "bench/oip.lua"),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    doc["rps"] = doc["requests"] / (doc["duration_us"] / 1e6)
    return doc


def open_loop(url: str, body: Path, rate: float, duration: float, name: str = "minilm-l3") -> dict[str, Any]:
    """oha at a fixed rate: requests leave on schedule whether or not earlier ones were answered (512
    connections, far more than the queue holds), latency counted from each scheduled send."""
    out = subprocess.run(
        [
            str(OHA),
            "-z",
            f"{duration:g}s",
            "-q",
            f"{rate:.0f}",
            "-c",
            "512",
            "-m",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-D",
            str(body),
            "--no-tui",
            "--latency-correction",
            "--output-format",
            "json",
            f"{url}/v2/models/{name}/infer",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(out.stdout)
    status = {str(k): int(v) for k, v in doc["statusCodeDistribution"].items()}
    return {
        "rate": rate,
        "sent": sum(status.values()),
        "duration_s": doc["summary"]["total"],
        "status": status,
        "errors": doc.get("errorDistribution", {}),
        "p50_ms": doc["latencyPercentiles"]["p50"] * 1e3,
        "p99_ms": doc["latencyPercentiles"]["p99"] * 1e3,
    }


def measure(
    url: str, body: Path, conns: int, duration: float, runs: int, name: str = "minilm-l3"
) -> dict[str, float]:
    wrk(url, body, conns, 2, name)  # warm-up
    rs = [wrk(url, body, conns, duration, name) for _ in range(runs)]
    assert all(r["errors_status"] == 0 for r in rs), rs
    return {
        "rps": statistics.median(r["rps"] for r in rs),
        "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1e3,
        "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1e3,
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def overhead(tmp: Path, d: float, n: int, with_kserve: bool) -> dict[str, Any]:
    """The serving overhead alone: the tiny example model computes in microseconds."""
    import onnxruntime as ort

    tiny = REPO / "examples" / "models" / "tiny-onnx"
    build_models.build("tiny-onnx")
    body = tmp / "tiny.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(str(tiny / "model/model.onnx"), so, providers=["CPUExecutionProvider"])
    x = np.array([[1, 2, 3, 4]], np.float32)
    loops = [_time_loop(lambda: sess.run(["y"], {"x": x}), d) for _ in range(n)]
    out: dict[str, Any] = {
        "raw_b1_p50_ms": statistics.median(float(np.percentile(t, 50)) * 1e3 for t in loops)
    }
    with infergate(tmp, MAX_BATCH, example=tiny) as (url, _s, _pid):
        out["served_c1"] = measure(url, body, 1, d, n, "tiny")
        out[f"served_c{2 * MAX_BATCH}"] = measure(url, body, 2 * MAX_BATCH, d, n, "tiny")
    with lean(model=tiny / "model/model.onnx") as url:
        out["lean_c1"] = measure(url, body, 1, d, n, "tiny")
        out[f"lean_c{2 * MAX_BATCH}"] = measure(url, body, 2 * MAX_BATCH, d, n, "tiny")
    if with_kserve:
        with kserve(tiny / "model/model.onnx", "tiny", "y") as url:
            out["kserve_c1"] = measure(url, body, 1, d, n, "tiny")
            out[f"kserve_c{2 * MAX_BATCH}"] = measure(url, body, 2 * MAX_BATCH, d, n, "tiny")
    print("overhead", out, flush=True)
    return out


def paired(tmp: Path, body: Path, d: float, n: int, threads: int = THREADS) -> dict[str, Any]:
    """Served ÷ raw with each served window right next to a raw window and a window of the lean reference
    server (order rotating), so every side of a ratio sees the same background load; the medians of
    the per-window ratios are reported."""
    sess = raw_session(threads)
    ids = np.array([IDS], dtype=np.int64)

    def feed(rows: int) -> dict[str, Any]:
        return {"input_ids": np.repeat(ids, rows, 0), "attention_mask": np.ones((rows, len(IDS)), np.int64)}

    big, one = feed(MAX_BATCH), feed(1)
    sat = 2 * MAX_BATCH
    pairs: list[dict[str, float]] = []
    sides = ("raw", "served", "lean")
    with (
        infergate(tmp, MAX_BATCH, runtime={"threads": {"intraOp": threads, "interOp": 1}}) as (url, _s, _pid),
        lean(threads) as lean_url,
    ):
        wrk(url, body, sat, 2)  # warm-up
        wrk(lean_url, body, sat, 2)
        for i in range(n):
            pair: dict[str, float] = {}
            for side in sides[i % 3 :] + sides[: i % 3]:
                if side == "raw":
                    t_big = _time_loop(lambda: sess.run(["461"], big), d / 2)
                    t_one = _time_loop(lambda: sess.run(["461"], one), d / 2)
                    pair["raw_rows_per_s"] = MAX_BATCH * len(t_big) / sum(t_big)
                    pair["raw_b1_p50_ms"] = float(np.percentile(t_one, 50)) * 1e3
                else:
                    target = url if side == "served" else lean_url
                    pair[f"{side}_rps"] = wrk(target, body, sat, d / 2)["rps"]
                    pair[f"{side}_c1_p50_ms"] = wrk(target, body, 1, d / 2)["p50_us"] / 1e3
            pair["load"] = os.getloadavg()[0]
            print("paired", pair, flush=True)
            pairs.append(pair)
    return {
        "pairs": pairs,
        "ratio": statistics.median(p["served_rps"] / p["raw_rows_per_s"] for p in pairs),
        "added_ms": statistics.median(p["served_c1_p50_ms"] - p["raw_b1_p50_ms"] for p in pairs),
        "lean_ratio": statistics.median(p["lean_rps"] / p["raw_rows_per_s"] for p in pairs),
        "lean_added_ms": statistics.median(p["lean_c1_p50_ms"] - p["raw_b1_p50_ms"] for p in pairs),
        "served_per_lean": statistics.median(p["served_rps"] / p["lean_rps"] for p in pairs),
    }


# ---- the run ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-server.md")
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument("--render", type=Path, help="only re-render the table from a results.json")
    ap.add_argument("--paired-only", action="store_true", help="only the paired served/raw windows")
    a = ap.parse_args()
    if a.render is not None:
        write(a.out, render(json.loads(a.render.read_text()), 2 * MAX_BATCH, a.duration, a.runs))
        return
    build_models.build("minilm-l3-onnx")
    d, n = a.duration, a.runs
    tmp = Path(tempfile.mkdtemp(prefix="igbench-"))
    bodies = {
        "tensor": tmp / "tensor.json",
        "text": tmp / "text.json",
    }
    bodies["tensor"].write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": "input_ids", "shape": [1, 16], "datatype": "INT64", "data": IDS},
                    {"name": "attention_mask", "shape": [1, 16], "datatype": "INT64", "data": [1] * 16},
                ]
            }
        )
    )
    bodies["text"].write_text(
        json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [TEXT]}]})
    )
    sat = 2 * MAX_BATCH
    if a.paired_only:
        print(json.dumps(paired(tmp, bodies["tensor"], d, n)))
        return
    res: dict[str, Any] = {"load_before": os.getloadavg()}
    run_kserve = not a.skip_kserve and KSERVE_PY.exists()
    res["overhead"] = overhead(tmp, d, n, run_kserve)
    res["raw"] = raw_figures(d, n)
    print("raw:", res["raw"], flush=True)
    res["paired"] = paired(tmp, bodies["tensor"], d, n)
    # The same pairs with one intra-op thread on both sides, which leaves a core for HTTP: what the
    # serving path costs when it does not have to take CPU from the runtime.
    res["paired_1thread"] = paired(tmp, bodies["tensor"], d, n, threads=1)

    starts = []
    for _ in range(n):
        with infergate(tmp, MAX_BATCH) as (_url, started, _pid):
            starts.append(started)
    res["start_to_ready_s"] = statistics.median(starts)

    for mb, label in ((MAX_BATCH, "on"), (1, "off")):
        with infergate(tmp, mb) as (url, _s, pid):
            for kind, body in bodies.items():
                for c in (1, sat):
                    res[f"{kind}_{label}_c{c}"] = measure(url, body, c, d, n)
                    print(kind, label, c, res[f"{kind}_{label}_c{c}"], flush=True)
            if label == "on":
                peak = res[f"tensor_on_c{sat}"]["rps"]
                rss0 = rss_kb(pid)
                over = [open_loop(url, bodies["tensor"], 2 * peak, d) for _ in range(n)]
                rss1 = rss_kb(pid)
                res["overload"] = {
                    "rate": 2 * peak,
                    "goodput_rps": statistics.median(
                        o["status"].get("200", 0) / o["duration_s"] for o in over
                    ),
                    "runs": over,
                    "rss_before_mb": rss0 / 1024,
                    "rss_after_mb": rss1 / 1024,
                }
                print("overload", res["overload"], flush=True)
    if run_kserve:
        with kserve() as url:
            for c in (1, sat):
                res[f"kserve_c{c}"] = measure(url, bodies["tensor"], c, d, n)
                print("kserve", c, res[f"kserve_c{c}"], flush=True)
        with lean() as url:  # what the same comparison gives a server that does nothing but batch
            for c in (1, sat):
                res[f"lean_c{c}"] = measure(url, bodies["tensor"], c, d, n)
                print("lean", c, res[f"lean_c{c}"], flush=True)
    res["load_after"] = os.getloadavg()
    (tmp / "results.json").write_text(json.dumps(res, indent=2))
    table = render(res, sat, d, n)
    write(a.out, table)
    print(table)


NOTES_MARK = "<!-- reading: kept when bench/server.py rewrites the figures above -->"


def write(out: Path, table: str) -> None:
    """The table, then whatever the file already had from NOTES_MARK on (the hand-written reading)."""
    old = out.read_text() if out.exists() else ""
    notes = old[old.index(NOTES_MARK) :] if NOTES_MARK in old else NOTES_MARK + "\n"
    out.write_text(table + "\n" + notes)


def _ratio(a: float, b: float) -> str:
    return f"{a:.0f} / {b:.0f} = **{a / b:.2f}**"


def render(r: dict[str, Any], sat: int, d: float, n: int) -> str:
    raw = r["raw"]
    rows = []

    def row(what: str, value: str, goal: str) -> None:
        rows.append(f"| {what} | {value} | {goal} |")

    for kind in ("tensor", "text"):
        on_sat, on_1 = r[f"{kind}_on_c{sat}"], r[f"{kind}_on_c1"]
        off_sat, off_1 = r[f"{kind}_off_c{sat}"], r[f"{kind}_off_c1"]
        raw_rows, raw_p50, raw_p99 = (
            raw[f"{kind}_rows_per_s"],
            raw[f"{kind}_b1_p50_ms"],
            raw[f"{kind}_b1_p99_ms"],
        )
        added = on_1["p50_ms"] - raw_p50
        row(
            f"{kind}: served req/s at c={sat} / raw batched rows/s", _ratio(on_sat["rps"], raw_rows), ">= 0.9"
        )
        row(
            f"{kind}: added latency at c=1 (served p50 - raw batch-1 p50)",
            f"{on_1['p50_ms']:.2f} - {raw_p50:.2f} = **{added:.2f} ms**",
            "<= 0.5 ms (tensor)",
        )
        row(
            f"{kind}: served p99 at c=1",
            f"**{on_1['p99_ms']:.2f} ms** (raw batch-1 p99 {raw_p99:.2f})",
            "<= 3 ms",
        )
        row(f"{kind}: batching on / off at c={sat}", _ratio(on_sat["rps"], off_sat["rps"]), ">= 1.8")
        row(f"{kind}: batching on / off at c=1", _ratio(on_1["rps"], off_1["rps"]), ">= 0.95")
    o = r["overload"]
    peak = r[f"tensor_on_c{sat}"]["rps"]
    n429 = statistics.median(x["status"].get("429", 0) for x in o["runs"])
    n5xx = max(sum(v for k, v in x["status"].items() if k.startswith("5")) for x in o["runs"])
    n_err = max(sum(x.get("errors", {}).values()) for x in o["runs"])
    row(
        f"overload: open loop at 2x peak ({o['rate']:.0f} req/s): goodput / peak",
        f"{_ratio(o['goodput_rps'], peak)} ({n429:.0f} answered 429, {n5xx} 5xx, {n_err} client errors)",
        ">= 0.7",
    )
    row(
        "overload: server RSS before -> after",
        f"{o['rss_before_mb']:.0f} -> {o['rss_after_mb']:.0f} MiB",
        "flat",
    )
    if f"kserve_c{sat}" in r:
        row(f"vs KServe ModelServer at c={sat} (tensor)", _ratio(peak, r[f"kserve_c{sat}"]["rps"]), ">= 3")
        row(
            "vs KServe ModelServer at c=1 (tensor)",
            _ratio(r["tensor_on_c1"]["rps"], r["kserve_c1"]["rps"]),
            ">= 1.8",
        )
        if f"lean_c{sat}" in r:
            row(
                "(calibration) lean reference server vs KServe, c=32 / c=1",
                f"{r[f'lean_c{sat}']['rps'] / r[f'kserve_c{sat}']['rps']:.2f} / "
                f"{r['lean_c1']['rps'] / r['kserve_c1']['rps']:.2f}",
                "—",
            )
    else:
        row("vs KServe ModelServer", "not run (bench/setup.sh makes its virtualenv)", ">= 3 / >= 1.8")
    if "paired" in r:
        pr = r["paired"]
        row(
            f"tensor, paired windows: served req/s at c={sat} / raw batched rows/s (median of pairs)",
            f"**{pr['ratio']:.2f}** over {len(pr['pairs'])} pairs",
            ">= 0.9",
        )
        row(
            "tensor, paired windows: added latency at c=1 (median of pairs)",
            f"**{pr['added_ms']:.2f} ms**",
            "<= 0.5 ms",
        )
        if "lean_ratio" in pr:
            row(
                f"lean reference server (bench/lean_server.py), same windows: req/s at c={sat} / raw; "
                "added latency at c=1",
                f"{pr['lean_ratio']:.2f}; {pr['lean_added_ms']:.2f} ms",
                "— (the host's ceiling)",
            )
            row(
                f"tensor, paired windows: infergate req/s at c={sat} / lean reference req/s",
                f"**{pr['served_per_lean']:.2f}**",
                "—",
            )
    if "paired_1thread" in r:
        p1 = r["paired_1thread"]
        row(
            f"(diagnostic) 1 intra-op thread on both sides, a core left for HTTP: served c={sat} / raw",
            f"{p1['ratio']:.2f} over {len(p1['pairs'])} pairs"
            + (f" (lean reference {p1['lean_ratio']:.2f})" if "lean_ratio" in p1 else ""),
            "—",
        )
    row("process start -> ready (golden passed)", f"**{r['start_to_ready_s']:.2f} s**", "<= 5 s")
    head = [
        "## Model server benchmark (MiniLM-L3 ONNX, CPU)",
        "",
        f"`bench/server.py`: median of {n} runs of {d:g} s after warm-up; wrk -t1 (closed loop) and "
        "oha at a fixed rate (open loop) as separate processes; ONNX Runtime with "
        f"{THREADS} intra-op threads everywhere; max batch {MAX_BATCH}, max queue delay 0. "
        "Raw = in-process `InferenceSession.run` with the same session options.",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
    ]
    ov = r["overhead"]
    ov_rows = [
        "",
        "Serving overhead alone (tiny example model, microseconds of compute; same settings):",
        "",
        "| figure | infergate | lean reference | KServe ModelServer |",
        "|---|---|---|---|",
    ]

    def cell(key: str, field: str, unit: str = "") -> str:
        return f"{ov[key][field]:.2f} {unit}" if key in ov else "not run"

    def line(what: str, field: str, c: int, unit: str = "") -> str:
        cells = " | ".join(cell(f"{who}_c{c}", field, unit) for who in ("served", "lean", "kserve"))
        return f"| {what} | {cells} |"

    ov_rows.append(line(f"p50 at c=1 (raw in-process {ov['raw_b1_p50_ms']:.3f} ms)", "p50_ms", 1, "ms"))
    ov_rows.append(line("p99 at c=1", "p99_ms", 1, "ms"))
    for c in (1, sat):
        ov_rows.append(line(f"req/s at c={c}", "rps", c))
    lb, la = r["load_before"], r["load_after"]
    load_line = (
        f"\nHost: {os.cpu_count()} cores; load average {lb[0]:.1f} at the start and {la[0]:.1f} at the end "
        "(the benchmark's own processes count). Anything else running moves the absolute figures, and "
        "compute-bound ratios most.\n"
    )
    ceiling = raw["tensor_rows_per_s"] * raw["tensor_b1_p50_ms"] / 1e3
    raw_line = (
        f"\nRaw in-process: tensor {raw['tensor_rows_per_s']:.0f} rows/s at batch {MAX_BATCH}, batch-1 p50 "
        f"{raw['tensor_b1_p50_ms']:.2f} ms; text (tokenize + run) {raw['text_rows_per_s']:.0f} rows/s, "
        f"batch-1 p50 {raw['text_b1_p50_ms']:.2f} ms. On this CPU a batch of {MAX_BATCH} is only "
        f"{ceiling:.2f}x the rows/s of batch 1 in-process, which caps what batching on/off can show.\n"
    )
    return "\n".join(head + rows) + "\n" + raw_line + "\n".join(ov_rows) + "\n" + load_line


if __name__ == "__main__":
    main()
