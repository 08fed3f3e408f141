"""Benchmark of tenancy (issue 20): what API keys and per-tenant limits cost, and whether one tenant's
abuse reaches another.

    .venv/bin/python -P bench/tenancy.py [--duration 10] [--runs 3] [--out bench/RESULTS-server.md]

1. Keys on vs off, side by side: two infergate servers on the MiniLM-L3 example, up at once, one with
   `tenancy` (two tenants, each with a key, a token bucket and a concurrency limit set above what the run
   reaches, so every request pays for the checks and none is refused) and one without. Each round
   measures both (order rotating) at c=32 and at c=1; the figures are the medians over rounds of the
   throughput ratio at c=32 (goal >= 0.98) and the added p50 at c=1 (goal <= 50 µs). The same on the tiny
   model, where serving is all there is to measure, as a diagnostic.
2. Fairness: one server, tenants `steady` and `abuser`, each limited to L requests/s (L = 0.3 x the
   server's measured peak). `steady` sends open loop at 0.8 L; per round once alone and once while
   `abuser` sends open loop at 10 L (order rotating). Goal: steady's goodput with the abuser >= 0.9 x
   alone.

The last line printed is for scripts outside the repo:
    tenancy: keys_tput_ratio=<x> keys_p50_us=<x> fair_goodput_ratio=<x>
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.load import median_ratio, open_loop, open_loop_cmd, open_loop_result, paired, wrk
from bench.server_table import write_section
from bench.serving import (
    EXAMPLE,
    MAX_BATCH,
    TENSOR_BODY,
    TINY,
    TINY_BODY,
    build,
    infergate,
    paired_round_args,
)

SAT = 2 * MAX_BATCH
MARK = "<!-- tenancy: bench/tenancy.py rewrites this section -->"


def _tenancy(keys: Path, limits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A `tenancy` section with one key file per tenant under `keys`; returns the config."""
    keys.mkdir(parents=True, exist_ok=True)
    for name in limits:
        (keys / name).write_text(f"key-{name}-{os.urandom(8).hex()}\n")
    return {
        "tenancy": {
            "keysDir": str(keys),
            "tenants": [{"name": name, **lim} for name, lim in limits.items()],
        }
    }


def _auth(keys: Path, tenant: str) -> str:
    return f"Authorization: Bearer {(keys / tenant).read_text().strip()}"


def keys_on_off(tmp: Path, example: Path, body: Path, name: str, d: float, n: int) -> dict[str, Any]:
    keys = tmp / f"keys-{name}"
    generous = {"requestsPerSecond": 1e6, "burst": 1_000_000, "maxConcurrent": 1000}
    extra = _tenancy(keys, {"bench": generous, "other": generous})
    header = [_auth(keys, "bench")]

    def window(url: str, headers: list[str]) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            sat, one = wrk(url, body, SAT, d / 2, name, headers), wrk(url, body, 1, d / 2, name, headers)
            assert sat["errors_status"] == 0, sat
            assert one["errors_status"] == 0, one
            return {"c32_rps": sat["rps"], "c1_p50_us": float(one["p50_us"]), "c1_rps": one["rps"]}

        return run

    with (
        infergate(tmp, MAX_BATCH, example=example) as (off, _s, _p),
        infergate(tmp, MAX_BATCH, example=example, extra=extra) as (on, _s1, _p1),
    ):
        for url, h in ((off, []), (on, header)):
            wrk(url, body, SAT, 2, name, h)  # warm-up
        rounds = paired({"off": window(off, []), "on": window(on, header)}, n, f"keys {name}")
    return {
        "rounds": rounds,
        "tput_ratio": median_ratio(rounds, "on_c32_rps", "off_c32_rps"),
        "p50_added_us": statistics.median(r["on_c1_p50_us"] - r["off_c1_p50_us"] for r in rounds),
        "off_c32_rps": statistics.median(r["off_c32_rps"] for r in rounds),
        "on_c32_rps": statistics.median(r["on_c32_rps"] for r in rounds),
        "off_c1_p50_us": statistics.median(r["off_c1_p50_us"] for r in rounds),
        "on_c1_p50_us": statistics.median(r["on_c1_p50_us"] for r in rounds),
    }


def fairness(tmp: Path, body: Path, d: float, n: int) -> dict[str, Any]:
    keys = tmp / "keys-fair"
    # The limits are set once the peak is known; the key files first, so the server can start.
    with infergate(tmp, MAX_BATCH) as (url, _s, _p):
        wrk(url, body, SAT, 2)
        peak = statistics.median(wrk(url, body, SAT, d / 2)["rps"] for _ in range(2))
    limit = 0.3 * peak
    lim = {"requestsPerSecond": round(limit, 1), "maxConcurrent": SAT}
    extra = _tenancy(keys, {"steady": lim, "abuser": lim})
    steady_rate, abuse_rate = 0.8 * limit, 10 * limit

    with infergate(tmp, MAX_BATCH, extra=extra) as (url, _s, _p):
        steady_h, abuser_h = [_auth(keys, "steady")], [_auth(keys, "abuser")]
        wrk(url, body, SAT, 2, headers=steady_h)

        def alone() -> dict[str, float]:
            r = open_loop(url, body, steady_rate, d, headers=steady_h, conns=64)
            return {"goodput_rps": r["goodput_rps"], "p99_ms": r["p99_ms"]}

        def abused() -> dict[str, float]:
            cmd = open_loop_cmd(url, body, abuse_rate, d + 1.5, headers=abuser_h, conns=256)
            abuser = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                time.sleep(0.5)  # the abuser is at full rate before the steady tenant starts
                r = open_loop(url, body, steady_rate, d, headers=steady_h, conns=64)
            finally:
                out, _ = abuser.communicate(timeout=60)
            a = open_loop_result(out, abuse_rate)
            return {
                "goodput_rps": r["goodput_rps"],
                "p99_ms": r["p99_ms"],
                "abuser_goodput_rps": a["goodput_rps"],
                "abuser_429_rps": a["status"].get("429", 0) / a["duration_s"],
                "abuser_5xx": float(sum(v for k, v in a["status"].items() if k.startswith("5"))),
                "abuser_s": a["duration_s"],
            }

        rounds = paired({"alone": alone, "abused": abused}, n, "fairness")
    return {
        "peak_rps": peak,
        "limit_rps": limit,
        "steady_rate": steady_rate,
        "abuse_rate": abuse_rate,
        "rounds": rounds,
        "ratio": median_ratio(rounds, "abused_goodput_rps", "alone_goodput_rps"),
        **{
            k: statistics.median(r[k] for r in rounds)
            for k in (
                "alone_goodput_rps",
                "abused_goodput_rps",
                "alone_p99_ms",
                "abused_p99_ms",
                "abused_abuser_goodput_rps",
                "abused_abuser_429_rps",
            )
        },
        "abuser_5xx": max(r["abused_abuser_5xx"] for r in rounds),
        # what the token bucket lets through in the abuser's window: its rate, and its burst (1 s worth) once
        "abuser_allowed_rps": limit * (1 + 1 / min(r["abused_abuser_s"] for r in rounds)),
    }


def render(r: dict[str, Any]) -> str:
    k, t, f = r["keys"], r["keys_tiny"], r["fair"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lb, la = r["load_before"], r["load_after"]
    abuser_ok = f["abused_abuser_goodput_rps"] <= 1.02 * f["abuser_allowed_rps"] and f["abuser_5xx"] == 0
    return "\n".join(
        [
            MARK,
            "## Tenancy benchmark (bench/tenancy.py)",
            "",
            f"Median of {r['runs']} paired rounds, {r['duration']:g} s per side per round; "
            f"host: {os.cpu_count()} cores, no GPU ({r.get('host_note') or 'nothing else noted'}); "
            f"load average {lb[0]:.1f} at the start, {la[0]:.1f} at the end.",
            "",
            "| figure | measured | goal | |",
            "|---|---|---|---|",
            f"| MiniLM-L3: keys + limits on / off, req/s at c={SAT} | {k['on_c32_rps']:.0f} / "
            f"{k['off_c32_rps']:.0f}: **{k['tput_ratio']:.3f}** | >= 0.98 | {met(k['tput_ratio'] >= 0.98)} |",
            f"| MiniLM-L3: added p50 at c=1 | {k['on_c1_p50_us']:.0f} - {k['off_c1_p50_us']:.0f} = "
            f"**{k['p50_added_us']:.0f} µs** | <= 50 µs | {met(k['p50_added_us'] <= 50)} |",
            f"| (diagnostic) tiny model: on / off at c={SAT}; added p50 at c=1 | {t['on_c32_rps']:.0f} / "
            f"{t['off_c32_rps']:.0f}: {t['tput_ratio']:.3f}; {t['p50_added_us']:.0f} µs | — | |",
            f"| fairness: steady tenant's goodput with an abuser at 10x its limit / alone (limits "
            f"{f['limit_rps']:.0f} req/s each, steady sends {f['steady_rate']:.0f}, abuser "
            f"{f['abuse_rate']:.0f}) | {f['abused_goodput_rps']:.0f} / {f['alone_goodput_rps']:.0f}: "
            f"**{f['ratio']:.3f}** | >= 0.9 | {met(f['ratio'] >= 0.9)} |",
            f"| fairness: steady tenant's p99 alone -> abused | {f['alone_p99_ms']:.1f} -> "
            f"{f['abused_p99_ms']:.1f} ms | — | |",
            f"| fairness: abuser served / answered 429 per second; 5xx | "
            f"{f['abused_abuser_goodput_rps']:.0f} / {f['abused_abuser_429_rps']:.0f}; {f['abuser_5xx']:.0f} "
            f"| served <= its limit with one burst ({f['abuser_allowed_rps']:.0f}/s over its window), "
            f"0 5xx | {met(abuser_ok)} |",
            "",
        ]
    )


def summary_line(r: dict[str, Any]) -> str:
    k, f = r["keys"], r["fair"]
    return (
        f"tenancy: keys_tput_ratio={k['tput_ratio']:.3f} keys_p50_us={k['p50_added_us']:.1f} "
        f"fair_goodput_ratio={f['ratio']:.3f}"
    )


def main() -> None:
    ap = paired_round_args()
    a = ap.parse_args()
    build()
    tmp = Path(tempfile.mkdtemp(prefix="igtenancy-"))
    body, tiny_body = tmp / "tensor.json", tmp / "tiny.json"
    body.write_text(json.dumps(TENSOR_BODY))
    tiny_body.write_text(json.dumps(TINY_BODY))
    d, n = a.duration, a.runs
    res: dict[str, Any] = {"load_before": os.getloadavg(), "duration": d, "runs": n, "host_note": a.host_note}
    res["keys"] = keys_on_off(tmp, EXAMPLE, body, "minilm-l3", d, n)
    res["keys_tiny"] = keys_on_off(tmp, TINY, tiny_body, "tiny", d, n)
    res["fair"] = fairness(tmp, body, d, n)
    res["load_after"] = os.getloadavg()
    (tmp / "results.json").write_text(json.dumps(res, indent=2))
    print(f"results: {tmp / 'results.json'}")
    section = render(res)
    write_section(a.out, MARK, section)
    print(section)
    print(summary_line(res))


if __name__ == "__main__":
    main()
