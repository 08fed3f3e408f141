"""Helpers for the real-node tier: the examples placed on the real node, their files, requests that
travel through a model's Service ClusterIP (kube-proxy's rules on this host) or to a pod's IP."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from tests.integration.controlplane import ControlPlane, controlplane_path
from tests.integration.models import REPO, example
from tests.integration.waiting import wait_for

sys.path.insert(0, str(REPO / "examples"))

import build_models
import on_real_node
import stage_models as staging

IMAGE = f"localhost/infergate-server:{os.environ.get('INFERGATE_IMAGE_TAG', 'dev')}"
VLLM_IMAGE = f"{IMAGE}-vllm"
NODE = "real-cpu-0"


def stage_models(dest: Path) -> Path:
    """Builds the CPU examples' files (pinned, reproducible) and lays them out under `dest`."""
    for name in build_models.ALL:
        build_models.build(name)
    staging.stage(dest)
    return dest


def real_example(name: str, rename: str | None = None, perturb_golden: bool = False) -> dict[str, Any]:
    """examples/models/<name>/inferencemodel.yaml, scheduled on the real node."""
    doc = on_real_node.on_real_node(copy.deepcopy(example(name)))
    if rename:
        doc["metadata"]["name"] = rename
    if perturb_golden:
        on_real_node.perturb_golden(doc)
    return doc


def service_url(api: client.ApiClient, namespace: str, name: str) -> str:
    svc = client.CoreV1Api(api).read_namespaced_service(name, namespace)
    port = next(p.port for p in svc.spec.ports if p.name == "http")
    return f"http://{svc.spec.cluster_ip}:{port}"


def service_cidr(plane: ControlPlane) -> str:
    """The cluster's Service range (SERVICE_CIDR in tools/controlplane/lib.sh)."""
    return str(controlplane_path(plane.env, "SERVICE_CIDR"))


def infer(base_url: str, model: str, inputs: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
    body = {"inputs": [{"name": k, **v} for k, v in inputs.items()]}
    response = httpx.post(f"{base_url}/v2/models/{model}/infer", json=body, timeout=timeout_s)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def infer_when_routed(
    base_url: str, model: str, inputs: dict[str, Any], timeout_s: float = 30
) -> dict[str, Any]:
    """`infer` through a Service whose pod has just turned Ready: kube-proxy programs the Service's rules a
    moment after readiness, so a refused connection is retried until `timeout_s`; any other failure is not."""

    def attempt() -> dict[str, Any] | None:
        try:
            return infer(base_url, model, inputs)
        except httpx.ConnectError:
            return None

    return wait_for(attempt, timeout_s, f"{base_url} to route to a ready {model} pod", interval_s=0.5)


def outputs_by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in result["outputs"]}


def pods(api: client.ApiClient, namespace: str, model: str) -> list[client.V1Pod]:
    items: list[client.V1Pod] = (
        client.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"serving.infergate.io/inferencemodel={model}")
        .items
    )
    return items


def wrong_sha256(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with spec.model.sha256 one hex digit off: the artifact no longer matches its pin."""
    digest = body["spec"]["model"]["sha256"]
    body["spec"]["model"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    return body


def assert_refused_before_any_server(models: Any, name: str) -> None:
    """ArtifactVerified=False naming the digest, and no server container of the model ever ran."""
    obj = models.wait_condition(name, "ArtifactVerified", "False", timeout_s=120)
    conditions = (obj.get("status") or {}).get("conditions") or []
    message = next(c for c in conditions if c["type"] == "ArtifactVerified")["message"]
    assert "sha256" in message.lower() or "digest" in message.lower(), message
    for pod in pods(models.api, models.namespace, name):
        for status in pod.status.container_statuses or []:
            assert status.state.running is None, status
            assert not status.restart_count, status
            assert status.state.terminated is None, status
