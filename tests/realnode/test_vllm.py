"""The vLLM image on the real node: SmolLM2-135M served by vLLM (CPU), Ready only after its golden prompt
passed, answering through the Service's OpenAI port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from kubernetes import client

from tests.integration.controlplane import REPO
from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.realnode.realnode import NODE, VLLM_IMAGE, pods, real_example, staging

pytestmark = [pytest.mark.integration, pytest.mark.realnode, pytest.mark.slow]


def on_cpu(doc: dict[str, object]) -> dict[str, object]:
    """The GPU example as a CPU model of the real node, on the vLLM image."""
    spec = doc["spec"]
    assert isinstance(spec, dict)
    spec["image"] = VLLM_IMAGE
    spec["hardware"] = {"cpu": "1", "memory": "6Gi"}
    spec["runtime"]["args"].pop("gpuMemoryUtilization", None)
    return doc


def test_vllm_serves_smollm2_after_its_golden_prompt(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess, models_dir: Path
) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "models" / "smollm2" / "build.py")], check=True, timeout=900
    )
    staging.stage(models_dir)
    models = Models(real_api, real_namespace)
    body = on_cpu(real_example("smollm2"))
    models.create(body)
    obj = models.wait_condition("smollm2", "GoldenPassed", "True", timeout_s=600)
    models.wait_available("smollm2", timeout_s=60)
    assert obj["status"]["golden"]["passed"] == 1

    (pod,) = pods(real_api, real_namespace, "smollm2")
    assert pod.spec.node_name == NODE
    server = next(s for s in pod.status.container_statuses if s.name == "server")
    assert server.ready
    assert server.restart_count == 0

    svc = client.CoreV1Api(real_api).read_namespaced_service("smollm2", real_namespace)
    port = next(p.port for p in svc.spec.ports if p.name == "openai")
    response = httpx.post(
        f"http://{svc.spec.cluster_ip}:{port}/v1/completions",
        json={"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0},
        timeout=60,
    )
    response.raise_for_status()
    assert response.json()["choices"][0]["text"].startswith(" Paris")
