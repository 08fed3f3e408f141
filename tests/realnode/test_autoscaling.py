"""Autoscaling on real metrics with real components (docs/autoscaling.md): metrics-server and KEDA feed
the HPA real numbers; a model with minReplicas 0 goes to zero when idle and wakes on a request held by
KEDA's HTTP interceptor, answered once a replica has passed golden; a request held past its timeout gets
503 with Retry-After; a model whose golden set fails on wake never receives held requests."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.conftest import state_file
from tests.realnode.realnode import outputs_by_name, pods, real_example, service_url

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def scale_to_zero(body: dict[str, Any], hold_s: int = 120, **extra: Any) -> dict[str, Any]:
    body["spec"].pop("replicas", None)
    body["spec"]["autoscaling"] = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "idleSeconds": 10,
        "holdTimeoutSeconds": hold_s,
        **extra,
    }
    return body


def deployment_replicas(api: client.ApiClient, namespace: str, name: str) -> int | None:
    """The Deployment's spec.replicas; None while the operator has not made it yet (a wait goes on)."""
    try:
        spec = client.AppsV1Api(api).read_namespaced_deployment(name, namespace).spec
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    replicas: int | None = spec.replicas
    return replicas


def phase(models: Models, name: str) -> str:
    obj = models.get(name)
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return ""
    return str(status.get("phase", ""))


def through_interceptor(
    plane: ControlPlane, namespace: str, model: str, case: dict[str, Any], timeout_s: float
) -> httpx.Response:
    """One OIP v2 request sent the way a client of a scale-to-zero model sends it: to KEDA's interceptor,
    with the model's Service as Host."""
    proxy = state_file(plane, "keda-http-interceptor.address")
    body = {"inputs": [{"name": k, **v} for k, v in case["inputs"].items()]}
    return httpx.post(
        f"http://{proxy}/v2/models/{model}/infer",
        json=body,
        headers={"Host": f"{model}.{namespace}"},
        timeout=timeout_s,
    )


def test_scales_to_zero_when_idle_and_a_held_request_is_answered_after_golden(
    real_plane: ControlPlane, real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = scale_to_zero(real_example("tiny-onnx"))
    models.create(body)
    wait_for(lambda: phase(models, "tiny") == "ScaledToZero", 180, "tiny: phase ScaledToZero")
    assert deployment_replicas(real_api, real_namespace, "tiny") == 0
    assert not [p for p in pods(real_api, real_namespace, "tiny") if p.metadata.deletion_timestamp is None]
    available = models.condition("tiny", "Available")
    assert available is not None
    assert (available["status"], available["reason"]) == ("False", "ScaledToZero")
    assert models.condition("tiny", "Degraded")["status"] == "False"  # type: ignore[index]

    case = body["spec"]["golden"]["cases"][0]
    started = time.monotonic()
    response = through_interceptor(real_plane, real_namespace, "tiny", case, timeout_s=150)
    woke_s = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.headers.get("X-KEDA-HTTP-Cold-Start") == "true"
    result = outputs_by_name(response.json())
    assert result["y"]["data"] == pytest.approx(case["expected"]["y"]["data"], abs=case["atol"])
    # Served by a replica that had passed golden: the pod is Ready (readiness = golden passed).
    (pod,) = [p for p in pods(real_api, real_namespace, "tiny") if p.metadata.deletion_timestamp is None]
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    print(f"wake through the interceptor: {woke_s:.1f} s")

    # Idle again: back to zero after idleSeconds.
    wait_for(lambda: phase(models, "tiny") == "ScaledToZero", 180, "tiny: back to ScaledToZero")


def test_a_request_held_past_its_timeout_gets_503_and_a_failing_golden_set_never_serves(
    real_plane: ControlPlane, real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = scale_to_zero(real_example("tiny-onnx", rename="broken", perturb_golden=True), hold_s=15)
    models.create(body)
    # Its first replica failed golden (Degraded, honestly); KEDA still takes it to zero when idle.
    wait_for(lambda: deployment_replicas(real_api, real_namespace, "broken") == 0, 180, "broken: at zero")
    wait_for(lambda: not pods(real_api, real_namespace, "broken"), 120, "broken: no pod left")

    case = body["spec"]["golden"]["cases"][1]  # an unperturbed case: a wrongly served one would answer 200
    started = time.monotonic()
    response = through_interceptor(real_plane, real_namespace, "broken", case, timeout_s=60)
    waited_s = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit()
    assert 14 <= waited_s < 45, waited_s
    # The wake happened (a pod was made) but it never turned Ready: golden failed.
    made = pods(real_api, real_namespace, "broken")
    assert made
    for pod in made:
        assert not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_hpa_targets_are_real_numbers_and_load_scales_out_and_back(
    real_plane: ControlPlane, real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx")
    body["spec"].pop("replicas", None)
    body["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetCPUUtilization": 50,
        "scaleDownStabilizationSeconds": 20,
    }
    models.create(body)
    models.wait_available("tiny", timeout_s=180)
    hpas = client.AutoscalingV2Api(real_api)

    def metrics_read() -> list[Any] | None:
        hpa = hpas.read_namespaced_horizontal_pod_autoscaler("keda-hpa-tiny", real_namespace)
        current = hpa.status.current_metrics or []
        kinds = {m.type for m in current}
        return current if {"Resource", "External"} <= kinds else None

    current = wait_for(metrics_read, 120, "keda-hpa-tiny: CPU and queue-depth values")
    by_type = {m.type: m for m in current}
    assert by_type["Resource"].resource.current.average_utilization is not None
    assert by_type["External"].external.current.average_value is not None

    url = service_url(real_api, real_namespace, "tiny")
    case = body["spec"]["golden"]["cases"][0]
    payload = {"inputs": [{"name": k, **v} for k, v in case["inputs"].items()]}
    stop = time.monotonic() + 120

    def load() -> int:
        sent = 0
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < stop and deployment_replicas(real_api, real_namespace, "tiny") != 2:
                for _ in range(50):
                    http.post(f"{url}/v2/models/tiny/infer", json=payload)
                    sent += 1
        return sent

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sent = sum(pool.map(lambda _: load(), range(4)))
    assert deployment_replicas(real_api, real_namespace, "tiny") == 2, f"no scale-out after {sent} requests"
    # Load gone: one replica again once the stabilisation window has passed, not before.
    idle_since = time.monotonic()
    wait_for(lambda: deployment_replicas(real_api, real_namespace, "tiny") == 1, 180, "scale back to 1")
    assert time.monotonic() - idle_since >= 20
