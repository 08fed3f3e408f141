"""Benchmark of hostile clients beside normal traffic (issue 20's Tests and figures).

    .venv/bin/python -P bench/hostile.py [--duration 10] [--runs 3] [--out bench/RESULTS-server.md]

One infergate server on the MiniLM-L3 example with its default limits (header and body timeouts, header
cap, body cap, response cap). Normal clients: wrk, closed loop at c=32. Each round has two windows, the
order rotating: normal traffic alone, and normal traffic while bench/hostile_clients.py runs its mix
(slow headers, slow bodies, huge headers, amplification attempts). In both, a prober GETs /healthz every
20 ms, and the server's RSS is sampled every 100 ms. Goals: normal goodput with the hostile mix >= 0.9 x
alone (median over rounds), server RSS at most 100 MiB over its level before the first hostile window,
/healthz p99 under 100 ms during the hostile windows.

The last line printed is for scripts outside the repo:
    hostile: goodput_ratio=<x> rss_delta_mib=<x> healthz_p99_ms=<x>
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.load import median_ratio, paired, wrk
from bench.server_table import write_section
from bench.serving import MAX_BATCH, REPO, TENSOR_BODY, build, infergate, paired_round_args, rss_kb

SAT = 2 * MAX_BATCH
MARK = "<!-- hostile: bench/hostile.py rewrites this section -->"
CLIENTS = str(REPO / "bench/hostile_clients.py")


class _RssPeak:
    """The highest RSS of `pid` seen, sampled every 100 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, rss_kb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _clients(mode: str, port: str, seconds: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-P", CLIENTS, mode, port, f"{seconds:g}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return doc


def run(tmp: Path, body: Path, d: float, n: int) -> dict[str, Any]:
    hostile_counts: list[dict[str, int]] = []
    with infergate(tmp, MAX_BATCH) as (url, _s, pid):
        port = url.rsplit(":", 1)[1]
        wrk(url, body, SAT, 2)  # warm-up
        time.sleep(1)
        rss0 = rss_kb(pid)

        def window(with_hostile: bool) -> dict[str, float]:
            prober = _clients("probe", port, d + 1)
            hostile = _clients("hostile", port, d + 2) if with_hostile else None
            time.sleep(1)  # the hostile mix has opened its connections
            with _RssPeak(pid) as rss:
                r = wrk(url, body, SAT, d)
            probe = _result(prober)
            if hostile is not None:
                hostile_counts.append(_result(hostile))
            return {
                "goodput_rps": r["ok_rps"],
                "non2xx": float(r["errors_status"]),
                "healthz_p99_ms": probe["p99_ms"],
                "healthz_max_ms": probe["max_ms"],
                "healthz_errors": float(probe["errors"]),
                "rss_peak_mib": rss.peak_kb / 1024,
            }

        rounds = paired({"alone": lambda: window(False), "hostile": lambda: window(True)}, n, "hostile")
        rss_end = rss_kb(pid)
    return {
        "rounds": rounds,
        "hostile_counts": hostile_counts,
        "goodput_ratio": median_ratio(rounds, "hostile_goodput_rps", "alone_goodput_rps"),
        "alone_goodput_rps": statistics.median(r["alone_goodput_rps"] for r in rounds),
        "hostile_goodput_rps": statistics.median(r["hostile_goodput_rps"] for r in rounds),
        "rss_before_mib": rss0 / 1024,
        "rss_peak_mib": max(r["hostile_rss_peak_mib"] for r in rounds),
        "rss_end_mib": rss_end / 1024,
        "rss_delta_mib": max(r["hostile_rss_peak_mib"] for r in rounds) - rss0 / 1024,
        "healthz_p99_ms": statistics.median(r["hostile_healthz_p99_ms"] for r in rounds),
        "healthz_p99_alone_ms": statistics.median(r["alone_healthz_p99_ms"] for r in rounds),
        "healthz_max_ms": max(r["hostile_healthz_max_ms"] for r in rounds),
        "healthz_errors": sum(r["hostile_healthz_errors"] for r in rounds),
        "normal_non2xx": sum(r["hostile_non2xx"] + r["alone_non2xx"] for r in rounds),
    }


def _totals(counts: list[dict[str, int]]) -> str:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return ", ".join(f"{k} {v}" for k, v in sorted(total.items()))


def render(r: dict[str, Any]) -> str:
    h = r["hostile"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lb, la = r["load_before"], r["load_after"]
    return "\n".join(
        [
            MARK,
            "## Hostile clients beside normal traffic (bench/hostile.py)",
            "",
            f"Median of {r['runs']} paired rounds, {r['duration']:g} s per window; normal traffic wrk "
            f"c={SAT}; "
            f"host: {os.cpu_count()} cores, no GPU ({r.get('host_note') or 'nothing else noted'}); "
            f"load average {lb[0]:.1f} at the start, {la[0]:.1f} at the end.",
            "",
            "| figure | measured | goal | |",
            "|---|---|---|---|",
            f"| normal clients' goodput with the hostile mix / alone | {h['hostile_goodput_rps']:.0f} / "
            f"{h['alone_goodput_rps']:.0f}: **{h['goodput_ratio']:.3f}** | >= 0.9 | "
            f"{met(h['goodput_ratio'] >= 0.9)} |",
            f"| server RSS: before -> peak during hostile windows -> end | {h['rss_before_mib']:.0f} -> "
            f"{h['rss_peak_mib']:.0f} -> {h['rss_end_mib']:.0f} MiB (**+{h['rss_delta_mib']:.0f} MiB**) | "
            f"<= +100 MiB | {met(h['rss_delta_mib'] <= 100)} |",
            f"| /healthz p99 during the hostile windows (alone: {h['healthz_p99_alone_ms']:.1f} ms; max "
            f"{h['healthz_max_ms']:.1f} ms, {h['healthz_errors']:.0f} failed) | "
            f"**{h['healthz_p99_ms']:.1f} ms** | < 100 ms | {met(h['healthz_p99_ms'] < 100)} |",
            f"| normal requests answered non-2xx (all windows) | {h['normal_non2xx']:.0f} | 0 | "
            f"{met(h['normal_non2xx'] == 0)} |",
            "",
            f"What the hostile clients got (all rounds; status 0 = closed without an answer): "
            f"{_totals(h['hostile_counts'])}.",
            "",
        ]
    )


def summary_line(r: dict[str, Any]) -> str:
    h = r["hostile"]
    return (
        f"hostile: goodput_ratio={h['goodput_ratio']:.3f} rss_delta_mib={h['rss_delta_mib']:.1f} "
        f"healthz_p99_ms={h['healthz_p99_ms']:.2f}"
    )


def main() -> None:
    ap = paired_round_args()
    a = ap.parse_args()
    build()
    tmp = Path(tempfile.mkdtemp(prefix="ighostile-"))
    body = tmp / "tensor.json"
    body.write_text(json.dumps(TENSOR_BODY))
    res: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "duration": a.duration,
        "runs": a.runs,
        "host_note": a.host_note,
    }
    res["hostile"] = run(tmp, body, a.duration, a.runs)
    res["load_after"] = os.getloadavg()
    (tmp / "results.json").write_text(json.dumps(res, indent=2))
    print(f"results: {tmp / 'results.json'}")
    section = render(res)
    write_section(a.out, MARK, section)
    print(section)
    print(summary_line(res))


if __name__ == "__main__":
    main()
