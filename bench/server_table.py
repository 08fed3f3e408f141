"""The markdown table bench/server.py writes into bench/RESULTS-server.md (above the hand-written reading)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

NOTES_MARK = "<!-- reading: kept when bench/server.py rewrites the figures above -->"


def write(out: Path, table: str) -> None:
    """The table, then whatever the file already had from NOTES_MARK on (the hand-written reading)."""
    old = out.read_text() if out.exists() else ""
    notes = old[old.index(NOTES_MARK) :] if NOTES_MARK in old else NOTES_MARK + "\n"
    out.write_text(table + "\n" + notes)


def write_section(out: Path, mark: str, section: str) -> None:
    """Puts `section` (which starts with `mark` and one `## ` heading) in `out`: in place of the one there
    (from `mark` to the next `## ` heading after its own, or the end), else right after NOTES_MARK, so
    bench/server.py's rewrites of the table above keep it."""
    text = out.read_text() if out.exists() else NOTES_MARK + "\n"
    if mark in text:
        start = text.index(mark)
        own = text.find("## ", start)
        nxt = text.find("\n## ", own + 3) if own != -1 else -1
        text = text[:start] + section + ("\n" + text[nxt + 1 :] if nxt != -1 else "")
    else:
        at = text.index(NOTES_MARK) + len(NOTES_MARK) + 1 if NOTES_MARK in text else len(text)
        text = text[:at] + "\n" + section + "\n" + text[at:]
    out.write_text(text)


def _ratio(a: float, b: float) -> str:
    return f"{a:.0f} / {b:.0f} = **{a / b:.2f}**"


def _met(x: float, goal: float, at_least: bool = True) -> str:
    return "met" if (x >= goal if at_least else x <= goal) else "**missed**"


def render(r: dict[str, Any], sat: int) -> str:
    raw, b, pr, tn = r["raw"], r["batching"], r["paired"], r["tiny"]
    rows: list[str] = []

    def row(what: str, value: str, goal: str, verdict: str = "") -> None:
        rows.append(f"| {what} | {value} | {goal} | {verdict} |")

    n_pairs = len(pr["pairs"])
    row(
        f"tensor: infergate req/s at c={sat} / raw batched rows/s (paired)",
        f"**{pr['ratio']:.2f}** (lean reference {pr['lean_ratio']:.2f})",
        ">= 0.9",
        _met(pr["ratio"], 0.9),
    )
    row(
        f"tensor: infergate / lean reference at c={sat} (paired)",
        f"**{pr['served_per_lean']:.2f}**",
        ">= 0.95",
        _met(pr["served_per_lean"], 0.95),
    )
    row(
        "tensor: added latency at c=1 (served p50 - raw batch-1 p50, paired)",
        f"**{pr['added_ms']:.2f} ms** (lean reference {pr['lean_added_ms']:.2f} ms)",
        "<= 0.5 ms",
        _met(pr["added_ms"], 0.5, at_least=False),
    )
    on1 = b["tensor_on_c1"]
    row(
        "tensor: served p99 at c=1",
        f"**{on1['p99_ms']:.2f} ms** (raw batch-1 p99 {raw['tensor_b1_p99_ms']:.2f})",
        "<= 3 ms",
        _met(on1["p99_ms"], 3.0, False),
    )
    t_on, t_lean = b[f"text_on_c{sat}"]["rps"], b[f"text_lean_c{sat}"]["rps"]
    row(
        f"text: infergate / lean reference at c={sat} (paired)",
        f"{t_on:.0f} / {t_lean:.0f}: **{b['text_vs_lean']:.2f}**",
        ">= 0.95",
        _met(b["text_vs_lean"], 0.95),
    )
    row(
        f"text: served req/s at c={sat} / raw batched rows/s (raw in its own window)",
        _ratio(t_on, raw["text_rows_per_s"]),
        ">= 0.9",
        _met(t_on / raw["text_rows_per_s"], 0.9),
    )
    row(
        "text: served p99 at c=1",
        f"**{b['text_on_c1']['p99_ms']:.2f} ms**",
        "<= 3 ms",
        _met(b["text_on_c1"]["p99_ms"], 3.0, False),
    )
    row(
        f"tiny model: infergate / lean reference at c={sat} (paired)",
        f"{tn[f'served_c{sat}']['rps']:.0f} / {tn[f'lean_c{sat}']['rps']:.0f}: **{tn['vs_lean']:.2f}**",
        ">= 0.85",
        _met(tn["vs_lean"], 0.85),
    )
    for kind in ("tensor", "text"):
        for c, goal in ((sat, 1.8), (1, 0.95)):
            x = b[f"{kind}_batching_c{c}"]
            row(f"{kind}: batching on / off at c={c} (paired)", f"**{x:.2f}**", f">= {goal}", _met(x, goal))
    o = b["overload"]
    n429 = statistics.median(x["status"].get("429", 0) for x in o["runs"])
    n5xx = max(sum(v for k, v in x["status"].items() if k.startswith("5")) for x in o["runs"])
    n_err = max(sum(x.get("errors", {}).values()) for x in o["runs"])
    row(
        f"overload: open loop at 2x peak (~{o['rate']:.0f} req/s): goodput / peak (paired)",
        f"{o['goodput_rps']:.0f} / {o['peak_rps']:.0f}: **{o['ratio']:.2f}** "
        f"({n429:.0f} answered 429, {n5xx} 5xx, {n_err} client errors)",
        ">= 0.7",
        _met(o["ratio"], 0.7),
    )
    row(
        "overload: server RSS before -> after",
        f"{o['rss_before_mb']:.0f} -> {o['rss_after_mb']:.0f} MiB",
        "flat",
    )
    ks = r.get("kserve")
    if ks:
        row(
            f"vs KServe ModelServer at c={sat} (tensor, paired)",
            f"**{ks[f'c{sat}']:.2f}**",
            ">= 3",
            _met(ks[f"c{sat}"], 3),
        )
        row(
            "vs KServe ModelServer at c=1 (tensor, paired)",
            f"**{ks['c1']:.2f}**",
            ">= 1.8",
            _met(ks["c1"], 1.8),
        )
        row(
            f"(calibration) lean reference vs KServe, c={sat} / c=1",
            f"{ks[f'lean_vs_kserve_c{sat}']:.2f} / {ks['lean_vs_kserve_c1']:.2f}",
            "—",
        )
    else:
        row("vs KServe ModelServer", "not run (bench/setup.sh makes its virtualenv)", ">= 3 / >= 1.8")
    if "paired_1thread" in r:
        p1 = r["paired_1thread"]
        row(
            f"(diagnostic) 1 intra-op thread on both sides, a core left for HTTP: served c={sat} / raw",
            f"{p1['ratio']:.2f} (lean reference {p1['lean_ratio']:.2f})",
            "—",
        )
    row(
        "process start -> ready (golden passed)",
        f"**{r['start_to_ready_s']:.2f} s**",
        "<= 5 s",
        _met(r["start_to_ready_s"], 5, False),
    )
    d, n = r["duration"], r["runs"]
    head = [
        "## Model server benchmark (MiniLM-L3 ONNX, CPU)",
        "",
        f"`bench/server.py`: every ratio is the median of {n} rounds of paired windows (the servers compared "
        f"up at once, each measured for {d:g} s per round, half at c={sat} and half at c=1, the order "
        "rotating); wrk -t1 (closed loop) and oha at a fixed rate (open loop) as separate processes; ONNX "
        f"Runtime with 2 intra-op threads everywhere; max batch 16, max queue delay 0. Raw = in-process "
        "`InferenceSession.run` with the same session options.",
        "",
        "| figure | measured | goal | |",
        "|---|---|---|---|",
    ]
    ov_rows = [
        "",
        "Serving overhead alone (tiny example model, microseconds of compute; same settings, paired):",
        "",
        "| figure | infergate | lean reference | KServe ModelServer |",
        "|---|---|---|---|",
    ]

    def cell(key: str, field: str, unit: str = "") -> str:
        return f"{tn[key][field]:.2f} {unit}".strip() if key in tn else "not run"

    def line(what: str, field: str, c: int, unit: str = "") -> str:
        cells = " | ".join(cell(f"{who}_c{c}", field, unit) for who in ("served", "lean", "kserve"))
        return f"| {what} | {cells} |"

    ov_rows.append(line(f"p50 at c=1 (raw in-process {tn['raw_b1_p50_ms']:.3f} ms)", "p50_ms", 1, "ms"))
    ov_rows.append(line("p99 at c=1", "p99_ms", 1, "ms"))
    for c in (1, sat):
        ov_rows.append(line(f"req/s at c={c}", "rps", c))
    lb, la = r["load_before"], r["load_after"]
    note = r.get("host_note") or "nothing else noted"
    load_line = (
        f"\nHost: {os.cpu_count()} cores, no GPU ({note}); load average {lb[0]:.1f} at the start and "
        f"{la[0]:.1f} at the end (the benchmark's own processes count).\n"
    )
    raw_line = (
        f"\nRaw in-process: tensor {raw['tensor_rows_per_s']:.0f} rows/s at batch 16, batch-1 p50 "
        f"{raw['tensor_b1_p50_ms']:.2f} ms; text (tokenize + run) {raw['text_rows_per_s']:.0f} rows/s, "
        f"batch-1 p50 {raw['text_b1_p50_ms']:.2f} ms. Paired tensor windows: {n_pairs}.\n"
    )
    return "\n".join(head + rows) + "\n" + raw_line + "\n".join(ov_rows) + "\n" + load_line
