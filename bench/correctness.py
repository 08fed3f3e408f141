"""Cost of issue 18's correctness features on the serving hot path, side by side with both off.

    bench/setup.sh                         # wrk (Debian)
    .venv/bin/python -P bench/correctness.py [--duration 6] [--runs 3]

Four processes of the MiniLM-L3 ONNX example (16 INT64 token ids + mask, 2 intra-op threads each):
`off` (no statistics, no shadow), `stats` (input statistics and PSI against a baseline), `shadow` (10 % of
answered requests copied to `candidate`, a fourth server with the same model) and the candidate. In each
round every side gets closed-loop wrk windows at c=32, c=1 and c=8, the order of the sides rotating, so
each side of a ratio sees the same background; the figures are medians of the per-round ratios and
differences.

On this 2-core host the candidate answers its copies on the same cores as the stable, so the shadow's
throughput ratio includes the candidate's work; the stable's own cost is shown apart as its CPU seconds
per request (from /proc), shadow ÷ off.

The last line is for scripts: `correctness: stats_tput_ratio=<x> stats_p50_us=<x> shadow_tput_ratio=<x>`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "examples"))
import build_models  # noqa: E402
from infergate_server.drift import record_baseline  # noqa: E402

from bench.load import wrk  # noqa: E402
from bench.serving import IDS, MAX_BATCH, THREADS, free_port  # noqa: E402
from bench.serving import process as _process  # noqa: E402
from bench.table import print_table  # noqa: E402

EXAMPLE = REPO / "examples" / "models" / "minilm-l3-onnx"
NAME = "minilm-l3"
SAMPLE_PERCENT = 10
SAT = 2 * MAX_BATCH  # c=32


@contextmanager
def serve(
    tmp: Path, label: str, extra: dict[str, Any], runtime: dict[str, Any] | None = None
) -> Iterator[tuple[str, int]]:
    doc = yaml.safe_load((EXAMPLE / "server.yaml").read_text())
    doc["model"]["path"] = str(EXAMPLE / doc["model"]["path"])
    doc["runtime"]["tokenizer"]["path"] = str(EXAMPLE / doc["runtime"]["tokenizer"]["path"])
    doc["runtime"]["batching"] = {"maxBatchSize": MAX_BATCH, "maxQueueDelayMs": 0}
    doc["runtime"]["threads"] = {"intraOp": THREADS, "interOp": 1}
    doc["server"]["logLevel"] = "warning"
    doc.update(extra)
    doc["runtime"].update(runtime or {})
    cfg = tmp / f"{label}.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    port = free_port()
    cmd = [str(REPO / ".venv/bin/infergate-server"), "serve", "--config", str(cfg), "--port", str(port)]
    with _process(cmd, port, "/readyz") as proc:
        yield f"http://127.0.0.1:{port}", proc.pid


def idle_priority(pid: int) -> None:
    """SCHED_IDLE for every thread of `pid`: it runs only on CPU no other process wants. On this 2-core host
    it stands for the candidate's own cores in a cluster (its pods run elsewhere); copies it cannot take in
    time are dropped by the stable's bounded queue and counted."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setscheduler(int(task.name), os.SCHED_IDLE, os.sched_param(0))


def shadow_outcomes(url: str) -> dict[str, float]:
    """The stable's inference_shadow_requests_total by result."""
    import urllib.request

    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("inference_shadow_requests_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = out.get(result, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def baseline(tmp: Path) -> Path:
    """Representative inputs: the bench's ids with random word ids in the middle, padded rows."""
    rng = np.random.default_rng(0)
    ids = np.tile(np.array(IDS, dtype=np.int64), (512, 1))
    ids[:, 1:-1] = rng.integers(1000, 30000, (512, len(IDS) - 2))
    mask = np.ones_like(ids)
    path = tmp / "baseline.json"
    path.write_text(record_baseline(NAME, {"input_ids": [ids], "attention_mask": [mask]}).to_json_text())
    return path


def in_process(repeat: int = 5) -> dict[str, float]:
    """What the hot path adds per request, timed in this process (the minimum of `repeat` runs, so other
    work on the host inflates it least): statistics' observe + its share of the fold; the shadow's offer
    at a 10 % sample, and per copy the encoding, decoding and comparison (the HTTP exchange not counted)."""
    import asyncio

    from infergate_server.config import DriftConfig, ShadowConfig
    from infergate_server.drift import Baseline, DriftMonitor
    from infergate_server.golden import compare_outputs
    from infergate_server.metrics import Metrics
    from infergate_server.protocol import InferRequest, encode_response
    from infergate_server.shadow import Shadow, outputs_of, request_body

    ids = np.array([IDS], dtype=np.int64)
    request = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    answer = {"461": np.random.default_rng(0).normal(size=(1, 384)).astype(np.float32)}
    n = 20_000
    with tempfile.TemporaryDirectory() as t:
        base = Baseline.load(baseline(Path(t)))
    stats, offers, copies = [], [], []
    for _ in range(repeat):
        config = DriftConfig(window_seconds=3600, min_values=10**8, max_pending_requests=n)
        monitor = DriftMonitor(NAME, config, ("input_ids", "attention_mask"), Metrics(), base)
        t0 = time.perf_counter()
        for _ in range(n):
            monitor.observe(request)
        while monitor.fold():
            pass
        stats.append((time.perf_counter() - t0) / n)

        async def offer() -> float:
            config = ShadowConfig(
                target_url="http://127.0.0.1:9",
                sample_percent=SAMPLE_PERCENT,
                max_requests_per_second=1e5,
                max_queue=n,
            )
            shadow = Shadow(NAME, config, Metrics())
            t0 = time.perf_counter()
            for _ in range(n):
                shadow.offer(request, answer)
            return (time.perf_counter() - t0) / n

        offers.append(asyncio.run(offer()))
        wanted = InferRequest(request, None, binary_default=True)
        reply, header = encode_response(NAME, "1", wanted, answer)  # what the candidate sends back
        t0 = time.perf_counter()
        for _ in range(n // 20):
            request_body(request)
            compare_outputs(answer, outputs_of(reply, header), 1e-4, 1e-4)
        copies.append((time.perf_counter() - t0) / (n // 20))
    return {"stats_us": min(stats) * 1e6, "offer_us": min(offers) * 1e6, "copy_us": min(copies) * 1e6}


def window(url: str, pid: int, body: Path, conns: int, d: float) -> dict[str, float]:
    before = cpu_seconds(pid)
    r = wrk(url, body, conns, d, NAME)
    assert r["errors_status"] == 0, r
    return {"rps": r["rps"], "p50_us": r["p50_us"], "p99_us": r["p99_us"],
            "cpu_per_req_us": (cpu_seconds(pid) - before) / max(r["requests"], 1) * 1e6}  # fmt: skip


def run(
    d: float,
    n: int,
    candidate_spinning: bool = True,
    sides_spinning: bool = True,
    candidate_idle: bool = False,
) -> dict[str, Any]:
    build_models.build("minilm-l3-onnx")
    with tempfile.TemporaryDirectory() as t, ExitStack() as stack:
        tmp = Path(t)
        body = tmp / "ids.json"
        body.write_text(json.dumps({"inputs": [
            {"name": "input_ids", "shape": [1, len(IDS)], "datatype": "INT64", "data": IDS},
            {"name": "attention_mask", "shape": [1, len(IDS)], "datatype": "INT64", "data": [1] * len(IDS)},
        ]}))  # fmt: skip
        drift = {"drift": {"baselinePath": str(baseline(tmp))}}
        # On a shared host the candidate's spinning intra-op threads take the stable's cores while idle.
        spin = {} if candidate_spinning else {"args": {"allowSpinning": False}}
        cand_url, cand_pid = stack.enter_context(serve(tmp, "candidate", {}, runtime=spin))
        if candidate_idle:
            idle_priority(cand_pid)
        shadow = {"shadow": {"targetUrl": cand_url, "samplePercent": SAMPLE_PERCENT,
                             "maxRequestsPerSecond": 10_000, "maxQueue": 256}}  # fmt: skip
        # Spinning threads burn the CPU they wait on: with a busier host (the candidate answering copies)
        # each request waits longer, so a spinning stable's own CPU per request grows with its neighbours'.
        own = {} if sides_spinning else {"args": {"allowSpinning": False}}
        sides = {
            "off": stack.enter_context(serve(tmp, "off", {}, runtime=own)),
            "stats": stack.enter_context(serve(tmp, "stats", drift, runtime=own)),
            "shadow": stack.enter_context(serve(tmp, "shadow", shadow, runtime=own)),
        }
        for url, _pid in sides.values():
            wrk(url, body, SAT, 2, NAME)  # warm-up
        rounds = []
        order = list(sides)
        for i in range(n):
            got: dict[str, Any] = {}
            for side in order[i % 3 :] + order[: i % 3]:
                url, pid = sides[side]
                got[f"{side}_c{SAT}"] = window(url, pid, body, SAT, d / 3)
                got[f"{side}_c1"] = window(url, pid, body, 1, d / 3)
                got[f"{side}_c8"] = window(url, pid, body, 8, d / 3)
            got["load"] = os.getloadavg()[0]
            print("round", json.dumps(got), flush=True)
            rounds.append(got)
        outcomes = shadow_outcomes(sides["shadow"][0])

    def med(f: Any) -> float:
        return float(statistics.median(f(r) for r in rounds))

    return {
        "rounds": rounds,
        "shadow_outcomes": outcomes,
        "stats_tput_ratio": med(lambda r: r[f"stats_c{SAT}"]["rps"] / r[f"off_c{SAT}"]["rps"]),
        "stats_p50_us": med(lambda r: r["stats_c1"]["p50_us"] - r["off_c1"]["p50_us"]),
        "shadow_tput_ratio": med(lambda r: r[f"shadow_c{SAT}"]["rps"] / r[f"off_c{SAT}"]["rps"]),
        "shadow_p99_ratio_c8": med(lambda r: r["shadow_c8"]["p99_us"] / r["off_c8"]["p99_us"]),
        "shadow_cpu_ratio": med(
            lambda r: r[f"shadow_c{SAT}"]["cpu_per_req_us"] / r[f"off_c{SAT}"]["cpu_per_req_us"]
        ),
        "stats_cpu_ratio": med(
            lambda r: r[f"stats_c{SAT}"]["cpu_per_req_us"] / r[f"off_c{SAT}"]["cpu_per_req_us"]
        ),
        "off_rps": med(lambda r: r[f"off_c{SAT}"]["rps"]),
        "off_p50_us": med(lambda r: r["off_c1"]["p50_us"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per side per round (c=32, c=1, c=8)")
    ap.add_argument("--runs", type=int, default=3, help="rounds")
    ap.add_argument(
        "--candidate-no-spin", action="store_true", help="the candidate's ONNX Runtime threads do not spin"
    )
    ap.add_argument(
        "--no-spin", action="store_true", help="no server's ONNX Runtime threads spin (the candidate's too)"
    )
    ap.add_argument(
        "--candidate-idle",
        action="store_true",
        help="the candidate at SCHED_IDLE: only on CPU the stable leaves (its own cores, as in a cluster)",
    )
    args = ap.parse_args()
    r = run(
        args.duration,
        args.runs,
        candidate_spinning=not (args.candidate_no_spin or args.no_spin),
        sides_spinning=not args.no_spin,
        candidate_idle=args.candidate_idle,
    )
    where = "at idle priority" if args.candidate_idle else "on the same cores"
    outcomes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["shadow_outcomes"].items())) or "none"
    cost = in_process()
    load = statistics.mean(x["load"] for x in r["rounds"])
    print_table(
        [
            ("off: req/s at c=32, p50 at c=1", f"{r['off_rps']:.0f} req/s, {r['off_p50_us']:.0f} µs"),
            ("stats on / off: req/s at c=32 (goal >= 0.98)", f"**{r['stats_tput_ratio']:.3f}**"),
            ("stats on - off: p50 at c=1 (goal <= 30 µs)", f"**{r['stats_p50_us']:.0f} µs**"),
            ("stats on / off: stable CPU per request at c=32", f"{r['stats_cpu_ratio']:.3f}"),
            (
                f"shadow {SAMPLE_PERCENT} % / off: req/s at c=32, candidate {where} (goal >= 0.95)",
                f"**{r['shadow_tput_ratio']:.3f}**",
            ),
            (
                f"shadow {SAMPLE_PERCENT} % / off: stable CPU per request at c=32",
                f"{r['shadow_cpu_ratio']:.3f}",
            ),
            (
                f"shadow {SAMPLE_PERCENT} % / off: p99 at c=8 (goal <= 1.05)",
                f"{r['shadow_p99_ratio_c8']:.3f}",
            ),
            ("in process: statistics per request (observe + fold share)", f"{cost['stats_us']:.1f} µs"),
            (
                f"in process: shadow offer per request ({SAMPLE_PERCENT} % sampled)",
                f"{cost['offer_us']:.2f} µs",
            ),
            (
                "in process: shadow work per copy (encode, decode, compare; no HTTP)",
                f"{cost['copy_us']:.0f} µs",
            ),
            ("shadow: sampled requests by outcome (the stable's counter)", outcomes),
            ("host load average during the rounds (2 cores)", f"{load:.1f}"),
        ]
    )
    print(
        f"correctness: stats_tput_ratio={r['stats_tput_ratio']:.3f} stats_p50_us={r['stats_p50_us']:.0f} "
        f"shadow_tput_ratio={r['shadow_tput_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
