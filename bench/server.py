"""Benchmark of the model server on the MiniLM-L3 ONNX example (issue 5's Benchmark section, issue 20's
"faster than today"): infergate against raw in-process ONNX Runtime, a lean reference server
(bench/lean_server.py) and KServe's ModelServer.

    bench/setup.sh                      # wrk (Debian), oha (crates.io), a separate KServe virtualenv
    .venv/bin/python -P bench/server.py [--duration 10] [--runs 3] [--out bench/RESULTS-server.md]

Same box, same model, same ONNX Runtime threads side by side. Every server runs as its own process and
is driven by a load generator in another process (bench/load.py). Every ratio is the median over --runs
rounds of paired windows: the servers compared are up at once, and each round measures each of them
for --duration seconds (split between c=1 and c=32), the order rotating. Inputs: 16 INT64 token ids
(+ mask), and a BYTES text of the same 16 tokens tokenized server-side. The last line printed is for
scripts outside the repo:

    server: served_raw=<x> vs_lean=<x> tiny_vs_lean=<x> text_vs_lean=<x> batching_c1=<x> overload=<x> \
kserve_c32=<x> kserve_c1=<x>
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.load import median_ratio, open_loop, paired, wrk
from bench.server_table import render, write
from bench.serving import (
    IDS,
    KSERVE_PY,
    MAX_BATCH,
    TENSOR_BODY,
    TEXT,
    TEXT_BODY,
    THREADS,
    TINY,
    TINY_BODY,
    TOKENIZER,
    build,
    infergate,
    kserve,
    lean,
    paired_round_args,
    raw_session,
    rss_kb,
    time_loop,
)

SAT = 2 * MAX_BATCH


def _window(url: str, body: Path, d: float, name: str = "minilm-l3") -> Callable[[], dict[str, float]]:
    """One side's window: d/2 s at c=SAT, then d/2 s at c=1."""

    def run() -> dict[str, float]:
        sat, one = wrk(url, body, SAT, d / 2, name), wrk(url, body, 1, d / 2, name)
        assert sat["errors_status"] == 0, sat
        assert one["errors_status"] == 0, one
        return {
            f"c{SAT}_rps": sat["rps"],
            "c1_rps": one["rps"],
            "c1_p50_ms": one["p50_us"] / 1e3,
            "c1_p99_ms": one["p99_us"] / 1e3,
        }

    return run


def _medians(rounds: list[dict[str, float]], side: str) -> dict[str, dict[str, float]]:
    """{c1: {rps, p50_ms, p99_ms}, c32: {rps}} of one side over the rounds."""

    def med(key: str) -> float:
        return statistics.median(r[f"{side}_{key}"] for r in rounds)

    return {
        "c1": {"rps": med("c1_rps"), "p50_ms": med("c1_p50_ms"), "p99_ms": med("c1_p99_ms")},
        f"c{SAT}": {"rps": med(f"c{SAT}_rps")},
    }


def _warm(*targets: tuple[str, Path, str]) -> None:
    for url, body, name in targets:
        wrk(url, body, SAT, 2, name)


# ---- raw in-process ONNX Runtime -------------------------------------------------------------------


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
            MAX_BATCH * len(t) / sum(t) for t in (time_loop(make(MAX_BATCH), duration) for _ in range(runs))
        ]
        single = [time_loop(make(1), duration) for _ in range(runs)]
        out[f"{kind}_rows_per_s"] = statistics.median(batched)
        out[f"{kind}_b1_p50_ms"] = statistics.median(float(np.percentile(s, 50)) * 1e3 for s in single)
        out[f"{kind}_b1_p99_ms"] = statistics.median(float(np.percentile(s, 99)) * 1e3 for s in single)
    return out


# ---- sections --------------------------------------------------------------------------------------


def tiny(tmp: Path, bodies: dict[str, Path], d: float, n: int, with_kserve: bool) -> dict[str, Any]:
    """The serving overhead alone: the tiny example model computes in microseconds."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(str(TINY / "model/model.onnx"), so, providers=["CPUExecutionProvider"])
    x = np.array([[1, 2, 3, 4]], np.float32)
    loops = [time_loop(lambda: sess.run(["y"], {"x": x}), d / 2) for _ in range(n)]
    out: dict[str, Any] = {
        "raw_b1_p50_ms": statistics.median(float(np.percentile(t, 50)) * 1e3 for t in loops)
    }
    body = bodies["tiny"]
    with ExitStack() as stack:
        urls = {
            "served": stack.enter_context(infergate(tmp, MAX_BATCH, example=TINY))[0],
            "lean": stack.enter_context(lean(model=TINY / "model/model.onnx", output="y")),
        }
        if with_kserve:
            urls["kserve"] = stack.enter_context(kserve(TINY / "model/model.onnx", "tiny", "y"))
        _warm(*[(u, body, "tiny") for u in urls.values()])
        rounds = paired({k: _window(u, body, d, "tiny") for k, u in urls.items()}, n, "tiny")
    out["rounds"] = rounds
    for who in urls:
        for c, fig in _medians(rounds, who).items():
            out[f"{who}_{c}"] = fig
    out["vs_lean"] = median_ratio(rounds, f"served_c{SAT}_rps", f"lean_c{SAT}_rps")
    return out


def tensor_pairs(tmp: Path, body: Path, d: float, n: int, threads: int = THREADS) -> dict[str, Any]:
    """Served ÷ raw with each served window right next to a raw window and a window of the lean reference
    server (order rotating), so every side of a ratio sees the same background load."""
    sess = raw_session(threads)
    ids = np.array([IDS], dtype=np.int64)

    def feed(rows: int) -> dict[str, Any]:
        return {"input_ids": np.repeat(ids, rows, 0), "attention_mask": np.ones((rows, len(IDS)), np.int64)}

    big, one = feed(MAX_BATCH), feed(1)

    def raw() -> dict[str, float]:
        t_big = time_loop(lambda: sess.run(["461"], big), d / 2)
        t_one = time_loop(lambda: sess.run(["461"], one), d / 2)
        return {"rows_per_s": MAX_BATCH * len(t_big) / sum(t_big), "b1_p50_ms": float(np.median(t_one)) * 1e3}

    rt = {"threads": {"intraOp": threads, "interOp": 1}}
    with infergate(tmp, MAX_BATCH, runtime=rt) as (url, _s, _pid), lean(threads) as lean_url:
        _warm((url, body, "minilm-l3"), (lean_url, body, "minilm-l3"))
        rounds = paired(
            {"raw": raw, "served": _window(url, body, d), "lean": _window(lean_url, body, d)},
            n,
            f"tensor pairs, {threads} thread(s)",
        )
    return {
        "pairs": rounds,
        "ratio": median_ratio(rounds, f"served_c{SAT}_rps", "raw_rows_per_s"),
        "added_ms": statistics.median(r["served_c1_p50_ms"] - r["raw_b1_p50_ms"] for r in rounds),
        "lean_ratio": median_ratio(rounds, f"lean_c{SAT}_rps", "raw_rows_per_s"),
        "lean_added_ms": statistics.median(r["lean_c1_p50_ms"] - r["raw_b1_p50_ms"] for r in rounds),
        "served_per_lean": median_ratio(rounds, f"served_c{SAT}_rps", f"lean_c{SAT}_rps"),
    }


def batching(tmp: Path, bodies: dict[str, Path], d: float, n: int) -> dict[str, Any]:
    """Batching on (max batch 16) and off (1), and the lean server for the text form, all up at once;
    then overload on the batching server: per round a peak window at c=SAT and an open-loop window at
    twice that rate."""
    res: dict[str, Any] = {}
    with (
        infergate(tmp, MAX_BATCH) as (on, _s, pid),
        infergate(tmp, 1) as (off, _s1, _p1),
        lean(tokenizer=TOKENIZER) as lean_url,
    ):
        for kind, body in (("tensor", bodies["tensor"]), ("text", bodies["text"])):
            sides = {"on": _window(on, body, d), "off": _window(off, body, d)}
            if kind == "text":
                sides["lean"] = _window(lean_url, body, d)
            _warm(*[(u, body, "minilm-l3") for u in (on, off, lean_url)])
            rounds = paired(sides, n, kind)
            res[f"{kind}_rounds"] = rounds
            for side in sides:
                for c, fig in _medians(rounds, side).items():
                    res[f"{kind}_{side}_{c}"] = fig
            res[f"{kind}_batching_c1"] = median_ratio(rounds, "on_c1_rps", "off_c1_rps")
            res[f"{kind}_batching_c{SAT}"] = median_ratio(rounds, f"on_c{SAT}_rps", f"off_c{SAT}_rps")
        res["text_vs_lean"] = median_ratio(res["text_rounds"], f"on_c{SAT}_rps", f"lean_c{SAT}_rps")
        rss0 = rss_kb(pid)
        over = []
        for _ in range(n):
            peak = wrk(on, bodies["tensor"], SAT, d / 2)["rps"]
            o = open_loop(on, bodies["tensor"], 2 * peak, d)
            o["peak_rps"] = peak
            print("overload", o, flush=True)
            over.append(o)
        res["overload"] = {
            "runs": over,
            "ratio": statistics.median(o["goodput_rps"] / o["peak_rps"] for o in over),
            "rate": statistics.median(o["rate"] for o in over),
            "goodput_rps": statistics.median(o["goodput_rps"] for o in over),
            "peak_rps": statistics.median(o["peak_rps"] for o in over),
            "rss_before_mb": rss0 / 1024,
            "rss_after_mb": rss_kb(pid) / 1024,
        }
    return res


def against_kserve(tmp: Path, body: Path, d: float, n: int) -> dict[str, Any]:
    """infergate, KServe and the lean reference (as a calibration), all up at once, paired windows."""
    with infergate(tmp, MAX_BATCH) as (url, _s, _pid), kserve() as ks, lean() as lean_url:
        _warm((url, body, "minilm-l3"), (ks, body, "minilm-l3"), (lean_url, body, "minilm-l3"))
        sides = {
            "served": _window(url, body, d),
            "kserve": _window(ks, body, d),
            "lean": _window(lean_url, body, d),
        }
        rounds = paired(sides, n, "kserve")
    return {
        "rounds": rounds,
        f"c{SAT}": median_ratio(rounds, f"served_c{SAT}_rps", f"kserve_c{SAT}_rps"),
        "c1": median_ratio(rounds, "served_c1_rps", "kserve_c1_rps"),
        f"lean_vs_kserve_c{SAT}": median_ratio(rounds, f"lean_c{SAT}_rps", f"kserve_c{SAT}_rps"),
        "lean_vs_kserve_c1": median_ratio(rounds, "lean_c1_rps", "kserve_c1_rps"),
        **{f"{side}_{c}": fig for side in sides for c, fig in _medians(rounds, side).items()},
    }


def summary_line(r: dict[str, Any]) -> str:
    ks = r.get("kserve")
    b = r["batching"]

    def f(x: float | None) -> str:
        return "nan" if x is None or math.isnan(x) else f"{x:.3f}"

    return (
        f"server: served_raw={f(r['paired']['ratio'])} vs_lean={f(r['paired']['served_per_lean'])} "
        f"tiny_vs_lean={f(r['tiny']['vs_lean'])} text_vs_lean={f(b['text_vs_lean'])} "
        f"batching_c1={f(b['tensor_batching_c1'])} overload={f(b['overload']['ratio'])} "
        f"kserve_c32={f(ks[f'c{SAT}'] if ks else None)} kserve_c1={f(ks['c1'] if ks else None)}"
    )


# ---- the run ---------------------------------------------------------------------------------------


def _bodies(tmp: Path) -> dict[str, Path]:
    bodies = {"tensor": TENSOR_BODY, "text": TEXT_BODY, "tiny": TINY_BODY}
    paths = {}
    for kind, doc in bodies.items():
        paths[kind] = tmp / f"{kind}.json"
        paths[kind].write_text(json.dumps(doc))
    return paths


def main() -> None:
    ap = paired_round_args()
    ap.add_argument("--skip-kserve", action="store_true")
    ap.add_argument("--one-thread", action="store_true", help="also the pairs with 1 intra-op thread")
    ap.add_argument("--render", type=Path, help="only re-render the table from a results.json")
    ap.add_argument("--paired-only", action="store_true", help="only the paired served/raw/lean windows")
    a = ap.parse_args()
    if a.render is not None:
        done = json.loads(a.render.read_text())
        write(a.out, render(done, SAT))
        print(summary_line(done))
        return
    build()
    d, n = a.duration, a.runs
    tmp = Path(tempfile.mkdtemp(prefix="igbench-"))
    bodies = _bodies(tmp)
    if a.paired_only:
        print(json.dumps(tensor_pairs(tmp, bodies["tensor"], d, n)))
        return
    res: dict[str, Any] = {"load_before": os.getloadavg(), "duration": d, "runs": n, "host_note": a.host_note}
    run_kserve = not a.skip_kserve and KSERVE_PY.exists()
    res["tiny"] = tiny(tmp, bodies, d, n, run_kserve)
    res["raw"] = raw_figures(d / 2, n)
    print("raw:", res["raw"], flush=True)
    res["paired"] = tensor_pairs(tmp, bodies["tensor"], d, n)
    if a.one_thread:  # a core left for HTTP: what serving costs when it need not take CPU from the runtime
        res["paired_1thread"] = tensor_pairs(tmp, bodies["tensor"], d, n, threads=1)
    starts = []
    for _ in range(n):
        with infergate(tmp, MAX_BATCH) as (_url, started, _pid):
            starts.append(started)
    res["start_to_ready_s"] = statistics.median(starts)
    res["batching"] = batching(tmp, bodies, d, n)
    if run_kserve:
        res["kserve"] = against_kserve(tmp, bodies["tensor"], d, n)
    res["load_after"] = os.getloadavg()
    (tmp / "results.json").write_text(json.dumps(res, indent=2))
    print(f"results: {tmp / 'results.json'}")
    table = render(res, SAT)
    write(a.out, table)
    print(table)
    print(summary_line(res))


if __name__ == "__main__":
    main()
