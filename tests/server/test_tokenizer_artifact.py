"""A tokenizer that is its own artifact: fetched beside the model, and pinned by SHA-256 like it."""

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

TEXT = {
    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a tokenizer pinned by digest"]}]
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)],
        capture_output=True,
        text=True,
    )


def test_fetch_places_the_tokenizer_only_when_its_digest_matches(
    minilm_example: Path, tmp_path: Path
) -> None:
    model, tokenizer = minilm_example / "model" / "model.onnx", minilm_example / "model" / "tokenizer.json"
    source = tmp_path / "tokenizer.json"
    source.write_bytes(tokenizer.read_bytes().replace(b'"[UNK]"', b'"[UNQ]"', 1))  # a tampered vocabulary
    config = tmp_path / "server.yaml"
    tok = f"{{path: out/tokenizer.json, uri: 'file://{source}', sha256: {sha256(tokenizer)}}}"
    config.write_text(
        f"model: {{name: m, path: out/model.onnx, uri: 'file://{model}', sha256: {sha256(model)}}}\n"
        f"runtime: {{tokenizer: {tok}}}\n"
    )
    refused = fetch(config)
    assert refused.returncode == 1
    assert "refusing the artifact" in refused.stderr
    assert not (tmp_path / "out" / "tokenizer.json").exists()
    source.write_bytes(tokenizer.read_bytes())
    fetched = fetch(config)
    assert fetched.returncode == 0, fetched.stderr
    assert sha256(tmp_path / "out" / "tokenizer.json") == sha256(tokenizer)
    assert sha256(tmp_path / "out" / "model.onnx") == sha256(model)


def test_serve_refuses_a_tokenizer_whose_digest_differs(start_server: Any, minilm_example: Path) -> None:
    srv = start_server(minilm_example, {"runtime": {"tokenizer": {"sha256": "0" * 64}}})
    doc = srv.wait_phase({"NotReady", "Ready", "Failed"})
    assert doc["phase"] == "Failed"
    assert doc["reason"].startswith("ArtifactDigestMismatch:")
    assert httpx.get(srv.url + "/readyz").status_code == 503


def test_serve_tokenizes_with_a_pinned_tokenizer(start_server: Any, minilm_example: Path) -> None:
    pinned = sha256(minilm_example / "model" / "tokenizer.json")
    srv = start_server(minilm_example, {"runtime": {"tokenizer": {"sha256": pinned}}})
    srv.wait_ready()
    r = httpx.post(srv.url + "/v2/models/minilm-l3/infer", json=TEXT, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["shape"] == [1, 384]
