"""Input drift (issue 18) on a real server: a baseline recorded by the CLI (reproducibly), live statistics,
and a PSI that stays low for inputs like the baseline's and crosses the alert threshold for shifted ones."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from .conftest import example_config

ALERT_PSI = 0.2  # charts/infergate values.yaml: metrics.prometheusRule.inputDriftPSI


def _cases(path: Path, shift: float, rows: int = 8, count: int = 60, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        data = [round(float(v), 6) for v in rng.normal(shift, 1.0, rows * 4)]
        cases.append(
            {"name": f"c{i}", "inputs": {"x": {"shape": [rows, 4], "datatype": "FP32", "data": data}}}
        )
    path.write_text(yaml.safe_dump({"cases": cases}))
    return path


def _record(config: Path, cases: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "golden", "record", "--baseline",
         "--config", str(config), "--cases", str(cases), "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _send(url: str, cases: Path) -> None:
    with httpx.Client(timeout=5) as client:
        for case in yaml.safe_load(cases.read_text())["cases"]:
            x = case["inputs"]["x"]
            body = {"inputs": [{"name": "x", **x}]}
            assert client.post(url + "/v2/models/tiny/infer", json=body).status_code == 200


def _psi(url: str) -> float | None:
    text = httpx.get(url + "/metrics", timeout=5).text
    found = re.search(r'^inference_input_drift_psi\{input="x",model="tiny"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def _wait_psi(url: str, other_than: float | None, timeout_s: float = 15.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = _psi(url)
        if value is not None and value != other_than:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no new PSI within {timeout_s} s (last {other_than})")


def test_baseline_recording_is_reproducible(tiny_example: Path, tmp_path: Path) -> None:
    config = example_config(tiny_example, tmp_path)
    cases = _cases(tmp_path / "representative.yaml", 0.0)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert _record(config, cases, first).returncode == 0
    done = _record(config, cases, second)
    assert done.returncode == 0, done.stderr
    assert "x 1920 values" in done.stdout
    assert first.read_bytes() == second.read_bytes()
    other = _record(config, _cases(tmp_path / "other.yaml", 0.0, seed=8), tmp_path / "c.json")
    assert other.returncode == 0
    assert (tmp_path / "c.json").read_bytes() != first.read_bytes(), "the file must depend on the inputs"


def test_shifted_inputs_cross_the_alert_threshold(
    start_server: Any, tiny_example: Path, tmp_path: Path
) -> None:
    config = example_config(tiny_example, tmp_path)
    baseline = tmp_path / "baseline.json"
    assert _record(config, _cases(tmp_path / "representative.yaml", 0.0), baseline).returncode == 0
    drift = {
        "baselinePath": str(baseline),
        "windowSeconds": 0.2,
        "minValues": 1920,
    }  # one batch of cases each
    srv = start_server(tiny_example, {"drift": drift})
    srv.wait_ready()
    assert _psi(srv.url) is None, "no score before a window has enough values"

    _send(srv.url, _cases(tmp_path / "like.yaml", 0.0, seed=11))  # same distribution, other draws
    steady = _wait_psi(srv.url, None)
    assert steady < 0.1, steady

    _send(srv.url, _cases(tmp_path / "shifted.yaml", 1.0, seed=12))  # mean moved by one std
    shifted = _wait_psi(srv.url, steady)
    assert shifted > ALERT_PSI, shifted

    doc = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()["drift"]
    assert doc["psi"]["x"] == shifted
    assert 0.8 < doc["stats"]["x"]["mean"] < 1.2
    metrics = httpx.get(srv.url + "/metrics", timeout=5).text
    assert 'inference_input_stat{input="x",model="tiny",stat="zero_fraction"}' in metrics
    assert 'inference_input_values_total{input="x",model="tiny"} 3840.0' in metrics


def test_a_baseline_for_other_inputs_fails_startup_naming_the_field(
    start_server: Any, tiny_example: Path, tmp_path: Path
) -> None:
    config = example_config(tiny_example, tmp_path)
    cases = tmp_path / "wrong.yaml"
    cases.write_text(yaml.safe_dump({"cases": [{"name": "w", "inputs": {
        "pixels": {"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}}}]}))  # fmt: skip
    baseline = tmp_path / "wrong.json"
    assert _record(config, cases, baseline).returncode == 0
    srv = start_server(tiny_example, {"drift": {"baselinePath": str(baseline)}})
    doc = srv.wait_phase({"Failed", "Ready", "NotReady"})
    assert doc["phase"] == "Failed"
    assert "drift.baselinePath: inputs ['pixels'] are not the model's inputs ['x']" in doc["reason"]
