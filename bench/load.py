"""Load generators for the server benchmarks, each its own process: wrk with bench/oip.lua (closed loop) and
oha at a fixed rate (open loop, since wrk cannot send on a schedule); and paired windows, the way every
ratio here is taken (each side of a ratio measured right next to the other, order rotating)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.serving import REPO

_PINS = dict(
    line.strip().split("=", 1)
    for line in (REPO / "bench/versions.env").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
)
# bench/setup.sh builds it
OHA = Path.home() / f".cache/infergate/bench-tools/oha-{_PINS['OHA_VERSION']}/bin/oha"


def wrk(
    url: str,
    body: Path,
    conns: int,
    duration: float,
    name: str = "minilm-l3",
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    """One closed-loop window: `conns` connections, each sending the next request when its answer came.
    No per-status counts (COUNT_STATUS): a Lua call per response costs wrk CPU the server would get; wrk's
    own non-2xx count (errors_status) is enough for closed-loop runs."""
    env = {**os.environ, "BODY": str(body), "PATH_INFER": f"/v2/models/{name}/infer"}
    cmd = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(REPO / "bench/oip.lua"),
    ]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run([*cmd, url], env=env, capture_output=True, text=True, check=True)
    doc: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    doc["rps"] = doc["requests"] / (doc["duration_us"] / 1e6)
    doc["ok_rps"] = (doc["requests"] - doc["errors_status"]) / (doc["duration_us"] / 1e6)
    return doc


def open_loop_cmd(
    url: str,
    body: Path,
    rate: float,
    duration: float,
    name: str = "minilm-l3",
    headers: Sequence[str] = (),
    conns: int = 512,
) -> list[str]:
    cmd = [str(OHA), "-z", f"{duration:g}s", "-q", f"{rate:.0f}", "-c", str(conns), "-m", "POST"]
    for h in ("Content-Type: application/json", *headers):
        cmd += ["-H", h]
    cmd += ["-D", str(body), "--no-tui", "--latency-correction", "--output-format", "json"]
    return [*cmd, f"{url}/v2/models/{name}/infer"]


def open_loop_result(stdout: str, rate: float) -> dict[str, Any]:
    doc = json.loads(stdout)
    status = {str(k): int(v) for k, v in doc["statusCodeDistribution"].items()}
    total = doc["summary"]["total"]
    return {
        "rate": rate,
        "sent": sum(status.values()),
        "duration_s": total,
        "status": status,
        "goodput_rps": status.get("200", 0) / total,
        "errors": doc.get("errorDistribution", {}),
        "p50_ms": (doc["latencyPercentiles"]["p50"] or 0) * 1e3,
        "p99_ms": (doc["latencyPercentiles"]["p99"] or 0) * 1e3,
    }


def open_loop(
    url: str,
    body: Path,
    rate: float,
    duration: float,
    name: str = "minilm-l3",
    headers: Sequence[str] = (),
    conns: int = 512,
) -> dict[str, Any]:
    """oha at a fixed rate: requests leave on schedule whether or not earlier ones were answered (`conns`
    connections, far more than the queue holds), latency counted from each scheduled send."""
    cmd = open_loop_cmd(url, body, rate, duration, name, headers, conns)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return open_loop_result(out.stdout, rate)


def measure(
    url: str, body: Path, conns: int, duration: float, runs: int, name: str = "minilm-l3"
) -> dict[str, float]:
    """Medians of `runs` closed-loop windows after a 2 s warm-up; every answer must be 2xx."""
    wrk(url, body, conns, 2, name)  # warm-up
    rs = [wrk(url, body, conns, duration, name) for _ in range(runs)]
    assert all(r["errors_status"] == 0 for r in rs), rs
    return {
        "rps": statistics.median(r["rps"] for r in rs),
        "p50_ms": statistics.median(r["p50_us"] for r in rs) / 1e3,
        "p99_ms": statistics.median(r["p99_us"] for r in rs) / 1e3,
    }


Window = Callable[[], dict[str, float]]


def paired(sides: dict[str, Window], runs: int, label: str) -> list[dict[str, float]]:
    """`runs` rounds of one window per side, the order rotating each round, so every side of a ratio sees
    the same background load; each round's figures are prefixed with its side's name."""
    names = list(sides)
    rounds = []
    for i in range(runs):
        k = i % len(names)
        got: dict[str, float] = {}
        for side in names[k:] + names[:k]:
            got.update({f"{side}_{key}": v for key, v in sides[side]().items()})
        got["load"] = os.getloadavg()[0]
        print(label, {k: round(v, 3) for k, v in got.items()}, flush=True)
        rounds.append(got)
    return rounds


def median_ratio(rounds: list[dict[str, float]], num: str, den: str) -> float:
    return statistics.median(r[num] / r[den] for r in rounds)
