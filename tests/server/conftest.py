"""Fixtures for server tests: example models built once, real `infergate-server serve` processes on
127.0.0.1 with free ports, stopped by pid."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "models"
sys.path.insert(0, str(REPO / "examples"))

import build_models  # noqa: E402

TINY_STARTUP_CALLS = 3  # the tiny example's warmup call and its two golden cases


def delayed(delay_ms: int, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Overrides for the tiny example: `runtime` as given, and every backend call after start-up
    taking `delay_ms` longer (the ORT backend's debug switch)."""
    args = {"debugDelayMs": delay_ms, "debugDelayAfterCalls": TINY_STARTUP_CALLS}
    return {"runtime": {**(runtime or {}), "args": args}}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_example() -> Path:
    build_models.build("tiny-onnx")
    return EXAMPLES / "tiny-onnx"


@pytest.fixture(scope="session")
def minilm_example() -> Path:
    build_models.build("minilm-l3-onnx")
    return EXAMPLES / "minilm-l3-onnx"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def example_config(example: Path, tmp: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A copy of the example's server.yaml in `tmp` with overrides merged in and paths made absolute."""
    doc = yaml.safe_load((example / "server.yaml").read_text())
    doc["model"]["path"] = str(example / doc["model"]["path"])
    tok = doc.get("runtime", {}).get("tokenizer")
    if tok:
        tok["path"] = str(example / tok["path"])
    doc = _merge(doc, overrides or {})
    path = tmp / f"server-{free_port()}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def serve_command(config: Path, port: int) -> list[str]:
    """`infergate-server serve` on `config`, listening on `port`, with this interpreter."""
    return [
        sys.executable,
        "-m",
        "infergate_server.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
    ]


class ServerProcess:
    def __init__(self, config: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            serve_command(config, self.port),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "error::RuntimeWarning"},
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_live(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not live after {timeout_s}s:\n{self.log()}")

    def wait_phase(self, phases: set[str], timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll /readyz until the model reaches one of `phases`; returns the last readiness document."""
        self.wait_live(timeout_s)
        deadline = time.monotonic() + timeout_s
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = httpx.get(self.url + "/readyz", timeout=2.0).json()
            if doc["phase"] in phases:
                return doc
            time.sleep(0.05)
        raise AssertionError(f"phase never in {phases}; last {doc}:\n{self.log()}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        doc = self.wait_phase({"Ready", "NotReady", "Failed"}, timeout_s)
        assert doc["ready"], f"not ready: {doc}\n{self.log()}"

    def terminate(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(example: Path, overrides: dict[str, Any] | None = None) -> ServerProcess:
        cfg = example_config(example, tmp_path, overrides)
        srv = ServerProcess(cfg, tmp_path / f"server-{len(started)}.log")
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.terminate()


@pytest.fixture(scope="module")
def tiny_server(tiny_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tiny")
    srv = ServerProcess(example_config(tiny_example, tmp), tmp / "server.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.terminate()


@pytest.fixture(scope="module")
def minilm_server(minilm_example: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("minilm")
    srv = ServerProcess(example_config(minilm_example, tmp), tmp / "server.log")
    try:
        srv.wait_ready(60)
        yield srv
    finally:
        srv.terminate()
