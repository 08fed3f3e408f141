"""Autoscaling on real metrics with real components (docs/autoscaling.md): metrics-server and KEDA feed
the HPA real numbers; a model with minReplicas 0 goes to zero when idle and wakes on a request held by
KEDA's HTTP interceptor, answered once a replica has passed golden; a request held past its timeout gets
503 with Retry-After; a model whose golden set fails on wake never receives held requests."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httpx
import pytest
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.conftest import prometheus_address, state_file
from tests.realnode.realnode import infer_when_routed, outputs_by_name, pods, real_example, service_url

pytestmark = [pytest.mark.integration, pytest.mark.realnode]
T = TypeVar("T")


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


class ClosedLoop:
    """`clients` threads, each sending the next request as soon as its answer comes (bounded in time
    whatever happens to the test); counts the outcomes."""

    def __init__(self, url: str, model: str, case: dict[str, Any], clients: int) -> None:
        self.url = f"{url}/v2/models/{model}/infer"
        self.payload = {"inputs": [{"name": k, **v} for k, v in case["inputs"].items()]}
        self.outcomes: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        deadline = time.monotonic() + 400
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    outcome = str(http.post(self.url, json=self.payload).status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                with self._lock:
                    self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __enter__(self) -> ClosedLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def samples(probe: Callable[[], T], seconds: float, interval_s: float) -> list[T]:
    taken: list[T] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        taken.append(probe())
        time.sleep(interval_s)
    return taken


def test_queue_depth_alone_scales_out_holds_steady_and_hands_replicas_back(
    real_plane: ControlPlane, real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    """No CPU request, so no CPU trigger: only the pods' inference_queue_depth (Prometheus -> KEDA -> HPA)
    can scale this model. Requests wait 200 ms for a batch to fill, and 6 clients of 2 rows never fill one
    of 64 rows, so a closed loop keeps about 6 requests queued: above the target of 2 per pod with one
    replica and with two. (With batches of 8, 4 such requests fill one at once, and the queue read 0-3 at
    scrape time: the HPA took the model back to 1 under the same load.)"""
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx", rename="queued")
    body["spec"].pop("replicas", None)
    body["spec"]["hardware"].pop("cpu", None)
    body["spec"]["runtime"]["batching"] = {"maxBatchSize": 64, "maxQueueDelayMs": 200}
    body["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 2,
        "targetQueueDepth": 2,
        "scaleDownStabilizationSeconds": 20,
    }
    models.create(body)
    models.wait_available("queued", timeout_s=180)
    hpa = wait_for(lambda: read_hpa(real_api, real_namespace, "keda-hpa-queued"), 60, "keda-hpa-queued")
    assert {m.type for m in hpa.spec.metrics} == {"External"}, hpa.spec.metrics  # queue depth only

    url = service_url(real_api, real_namespace, "queued")
    case = body["spec"]["golden"]["cases"][0]
    infer_when_routed(url, "queued", case["inputs"])

    def replicas() -> int | None:
        return deployment_replicas(real_api, real_namespace, "queued")

    def ready() -> int:
        status = client.AppsV1Api(real_api).read_namespaced_deployment("queued", real_namespace).status
        return int(status.ready_replicas or 0)

    with ClosedLoop(url, "queued", case, clients=6) as load:
        wait_for(lambda: replicas() == 2, 180, "queued: scaled out to 2 by queue depth", interval_s=1)
        hpa = read_hpa(real_api, real_namespace, "keda-hpa-queued")
        depth = hpa.status.current_metrics[0].external.current.average_value if hpa else None
        wait_for(lambda: ready() == 2, 120, "queued: 2 ready replicas", interval_s=1)

        # A steady load: the count stays where it went (the HPA evaluates every 15 s, KEDA polls every 10 s).
        prometheus = prometheus_address(real_plane)
        query = f'inference_queue_depth{{namespace="{real_namespace}",model="queued"}}'

        def observed() -> tuple[int | None, str | None, list[str]]:
            """Replicas, the HPA's current queue depth per pod, and Prometheus's per-pod values."""
            hpa = read_hpa(real_api, real_namespace, "keda-hpa-queued")
            current = (hpa.status.current_metrics or []) if hpa else []
            value = current[0].external.current.average_value if current else None
            found = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5).json()
            per_pod = [r["value"][1] for r in found["data"]["result"]]
            return replicas(), value, per_pod

        steady = samples(observed, 45, 1)
        print("steady: (replicas, HPA value, Prometheus per pod)", steady)
        assert {r for r, _, _ in steady} == {2}, steady

        # Autoscaling off with replicas 2: the operator takes the count back from KEDA's HPA, with no
        # moment below 2 (neither the default of 1 nor a reset to the spec's absence).
        models.patch("queued", {"spec": {"autoscaling": None, "replicas": 2}})
        handover = samples(lambda: min(replicas() or 0, ready()), 30, 0.2)
        assert min(handover) == 2, handover
        wait_for(lambda: not scaled_objects(real_api, real_namespace), 60, "the ScaledObject removed")
        wait_for(lambda: not hpa_names(real_api, real_namespace), 60, "KEDA's HPA removed")
        deployment = client.AppsV1Api(real_api).read_namespaced_deployment("queued", real_namespace)
        assert deployment.spec.replicas == 2
        assert "infergate" in replicas_managers(deployment), deployment.metadata.managed_fields
    print(f"queue depth per pod at scale-out {depth}; requests {load.outcomes}")
    assert set(load.outcomes) == {"200"}, load.outcomes  # nothing lost while scaling or handing over
    assert load.outcomes["200"] > 100, load.outcomes


def read_hpa(api: client.ApiClient, namespace: str, name: str) -> client.V2HorizontalPodAutoscaler | None:
    try:
        return client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def scaled_objects(api: client.ApiClient, namespace: str) -> list[str]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "keda.sh", "v1alpha1", namespace, "scaledobjects"
    )
    return [item["metadata"]["name"] for item in cast(dict[str, Any], listed)["items"]]


def hpa_names(api: client.ApiClient, namespace: str) -> list[str]:
    listed = client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(namespace)
    return [hpa.metadata.name for hpa in listed.items]


def replicas_managers(deployment: client.V1Deployment) -> set[str]:
    """Field managers that hold the Deployment's .spec.replicas."""
    return {
        entry.manager
        for entry in deployment.metadata.managed_fields or []
        if "f:replicas" in ((entry.fields_v1 or {}).get("f:spec") or {})
    }
