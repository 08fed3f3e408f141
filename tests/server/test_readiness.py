"""Ready only after golden passes, for the digest actually loaded; anything else never turns ready."""

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import yaml
from onnx import numpy_helper

from .conftest import ServerProcess

BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def _stays_unready(srv: ServerProcess, seconds: float = 1.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert httpx.get(srv.url + "/readyz").status_code == 503
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 503
        time.sleep(0.1)
    r = httpx.post(srv.url + "/v2/models/tiny/infer", json=BODY)
    assert r.status_code == 503
    assert "not ready" in r.json()["error"]


def test_readiness_only_after_golden_passes(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example)
    srv.wait_live()
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = httpx.get(srv.url + "/readyz").json()
        seen.append((doc["phase"], doc["ready"]))
        if doc["ready"]:
            break
        time.sleep(0.005)
    assert seen[-1] == ("Ready", True)
    assert all(not ready for phase, ready in seen if phase != "Ready")
    golden = httpx.get(srv.url + "/v2/models/tiny/golden").json()
    assert golden["result"] == "Passed"
    assert golden["digest"] == doc["digest"]


def test_perturbed_expected_output_never_turns_ready(start_server: Any, tiny_example: Path) -> None:
    case = {
        "name": "off-by-a-bit",
        "inputs": {"x": {"shape": [1, 4], "datatype": "FP32", "data": [-1, -2, -3, -4]}},
        "expected": {"y": {"shape": [1, 3], "datatype": "FP32", "data": [0.1, -0.2, 0.31]}},
        "atol": 1e-3,
        "rtol": 0,
    }
    srv = start_server(tiny_example, {"golden": {"cases": [case]}})
    doc = srv.wait_phase({"NotReady", "Ready", "Failed"})
    assert doc["phase"] == "NotReady"
    assert "GoldenFailed" not in doc["reason"]
    assert "off-by-a-bit: Failed" in doc["reason"]
    golden = httpx.get(srv.url + "/v2/models/tiny/golden").json()
    assert golden["result"] == "Failed"
    assert golden["failed"] == 1
    assert abs(golden["cases"][0]["maxAbsError"] - 0.01) < 1e-4
    _stays_unready(srv)
    assert 'golden_checks_total{model="tiny",result="Failed"} 1.0' in httpx.get(srv.url + "/metrics").text


def test_perturbed_model_never_turns_ready(start_server: Any, tiny_example: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_example / "model" / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "b2":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(0.01), "b2"))
    path = tmp_path / "perturbed.onnx"
    onnx.save(model, str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    srv = start_server(tiny_example, {"model": {"path": str(path), "sha256": sha}})
    doc = srv.wait_phase({"NotReady", "Ready", "Failed"})
    assert doc["phase"] == "NotReady"
    assert doc["digest"] == sha
    _stays_unready(srv)


def test_tampered_artifact_is_refused_by_serve(start_server: Any, tiny_example: Path, tmp_path: Path) -> None:
    data = bytearray((tiny_example / "model" / "model.onnx").read_bytes())
    data[-1] ^= 0x01  # one byte
    path = tmp_path / "tampered.onnx"
    path.write_bytes(bytes(data))
    srv = start_server(tiny_example, {"model": {"path": str(path)}})  # sha256 stays the pinned one
    doc = srv.wait_phase({"NotReady", "Ready", "Failed"})
    assert doc["phase"] == "Failed"
    assert doc["reason"].startswith("ArtifactDigestMismatch:")
    assert "refusing" in doc["reason"]
    _stays_unready(srv, 0.5)
    assert "onnxruntime" not in srv.log().split("ArtifactDigestMismatch")[0].split("Verifying")[-1]
    assert (
        'inference_startup_failures_total{model="tiny",step="verify"} 1.0'
        in httpx.get(srv.url + "/metrics").text
    )


def test_tampered_artifact_is_refused_by_fetch_cli(tiny_example: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    data = bytearray((tiny_example / "model" / "model.onnx").read_bytes())
    data[10] ^= 0x40
    src = tmp_path / "src" / "model.onnx"
    src.parent.mkdir()
    src.write_bytes(bytes(data))
    cfg = tmp_path / "server.yaml"
    sha = hashlib.sha256((tiny_example / "model" / "model.onnx").read_bytes()).hexdigest()
    cfg.write_text(f"model: {{name: tiny, path: dest/model.onnx, uri: 'file://{src}', sha256: {sha}}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "refusing the artifact" in r.stderr
    assert not (tmp_path / "dest" / "model.onnx").exists()
    src.write_bytes((tiny_example / "model" / "model.onnx").read_bytes())
    r = subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sha


def test_no_golden_cases_never_ready_unless_not_required(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"golden": {"cases": []}})
    doc = srv.wait_phase({"NotReady", "Ready", "Failed"})
    assert doc["phase"] == "NotReady"
    assert "no golden cases" in doc["reason"]
    srv2 = start_server(tiny_example, {"golden": {"cases": [], "required": False}})
    srv2.wait_ready()


def test_bad_config_fails_at_start_naming_the_field(tiny_example: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "server.yaml"
    cfg.write_text("model: {name: tiny, path: m.onnx}\nruntime: {batching: {maxBatchSize: 0}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "runtime.batching.maxBatchSize: Input should be greater than or equal to 1" in r.stderr


def test_golden_reruns_every_period(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"golden": {"periodSeconds": 0.2}})
    srv.wait_ready()
    time.sleep(1.0)
    text = httpx.get(srv.url + "/metrics").text
    line = next(
        x for x in text.splitlines() if x.startswith('golden_checks_total{model="tiny",result="Passed"}')
    )
    assert float(line.split()[-1]) >= 6  # two cases, three or more runs
    assert httpx.get(srv.url + "/readyz").status_code == 200


def test_require_pinned_refuses_an_unpinned_model(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"server": {"requirePinned": True}, "model": {"sha256": None}})
    doc = srv.wait_phase({"Ready", "NotReady", "Failed"})
    assert doc["phase"] == "Failed"
    assert "model.sha256 is not set" in doc["reason"]


def test_require_pinned_refuses_an_unpinned_tokenizer(start_server: Any, minilm_example: Path) -> None:
    srv = start_server(minilm_example, {"server": {"requirePinned": True}})  # its tokenizer has no sha256
    doc = srv.wait_phase({"Ready", "NotReady", "Failed"}, 60)
    assert doc["phase"] == "Failed"
    assert "tokenizer.sha256 is not set" in doc["reason"]


def _many_cases(tiny_example: Path, count: int) -> list[dict[str, Any]]:
    """The example's own golden case, `count` times over: a golden run long enough to probe mid-way."""
    doc = yaml.safe_load((tiny_example / "server.yaml").read_text())
    case = doc["golden"]["cases"][0]
    return [{**case, "name": f"{case['name']}-{i}"} for i in range(count)]


def test_a_readiness_probe_mid_startup_waits_for_the_verdict(start_server: Any, tiny_example: Path) -> None:
    """readinessHoldSeconds: a probe that arrives while golden runs answers with the verdict (200 once it
    passed), instead of a 503 that the kubelet keeps for a whole probe period."""
    srv = start_server(
        tiny_example,
        {"golden": {"cases": _many_cases(tiny_example, 1000)}, "server": {"readinessHoldSeconds": 30}},
    )
    srv.wait_live()
    pending = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()
    assert pending["phase"] in {"Starting", "Verifying", "Loading", "Checking"}, "too late: proves nothing"
    started = time.monotonic()
    response = httpx.get(srv.url + "/readyz", timeout=35)
    assert response.status_code == 200, response.text
    assert response.json()["phase"] == "Ready"
    assert time.monotonic() - started < 30


def test_without_a_hold_a_probe_mid_startup_answers_at_once(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"golden": {"cases": _many_cases(tiny_example, 1000)}})
    srv.wait_live()
    response = httpx.get(srv.url + "/readyz", timeout=5)
    assert response.status_code == 503
    assert response.json()["phase"] in {"Starting", "Verifying", "Loading", "Checking"}
