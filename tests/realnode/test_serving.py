"""Real pods on the real node: fetch and verify in the init container, golden-gated readiness, answers
through the Service, status read from the servers, a tampered artifact and a perturbed golden set."""

from __future__ import annotations

import ipaddress
import math
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.realnode import (
    NODE,
    assert_refused_before_any_server,
    infer,
    infer_when_routed,
    outputs_by_name,
    pods,
    real_example,
    service_cidr,
    service_url,
    wrong_sha256,
)

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def close(got: list[float], want: list[float], atol: float, rtol: float) -> bool:
    return len(got) == len(want) and all(
        math.isclose(g, w, abs_tol=atol, rel_tol=rtol) for g, w in zip(got, want, strict=True)
    )


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def test_a_cluster_ip_kube_proxy_does_not_route_is_refused_not_answered_from_outside(
    real_plane: ControlPlane, real_api: client.ApiClient
) -> None:
    """Until kube-proxy has synced a Service, and for an instant when the Service gains or loses its last
    endpoint, its ClusterIP has no rule. A connection to it must then be refused, as in a cluster, not take
    the host's default route: on this machine an egress proxy answers any TCP connection there (HTTP 404,
    empty body), which KEDA's interceptor, forwarding a held request to a model that had just turned Ready,
    passed on to its client as the model's answer."""
    network = ipaddress.ip_network(service_cidr(real_plane))
    services = client.CoreV1Api(real_api).list_service_for_all_namespaces().items
    used = {s.spec.cluster_ip for s in services}
    unused = next(str(ip) for ip in reversed(list(network.hosts())) if str(ip) not in used)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{unused}:8080/v2/health/ready", timeout=5)


def test_tiny_serves_its_golden_outputs_through_the_service(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx")
    models.create(body)
    obj = models.wait_condition("tiny", "GoldenPassed", "True", timeout_s=180)
    models.wait_available("tiny", timeout_s=60)

    (pod,) = pods(real_api, real_namespace, "tiny")
    assert pod.spec.node_name == NODE
    fetch = pod.status.init_container_statuses[0]
    assert fetch.state.terminated is not None
    assert fetch.state.terminated.exit_code == 0

    golden = obj["status"]["golden"]
    assert golden["passed"] == len(body["spec"]["golden"]["cases"])
    assert golden["failed"] == 0
    assert golden["checkedAt"]
    assert condition(obj, "ArtifactVerified")["status"] == "True"

    url = service_url(real_api, real_namespace, "tiny")
    infer_when_routed(url, "tiny", body["spec"]["golden"]["cases"][0]["inputs"])
    for case in body["spec"]["golden"]["cases"]:
        result = outputs_by_name(infer(url, "tiny", case["inputs"]))
        for name, want in case["expected"].items():
            assert result[name]["shape"] == want["shape"]
            assert close(result[name]["data"], want["data"], case["atol"], case["rtol"]), (name, result)


def test_tampered_artifact_never_starts_a_server(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    models.create(wrong_sha256(real_example("tiny-onnx", rename="tampered")))
    assert_refused_before_any_server(models, "tampered")
    assert condition(models.get("tampered"), "Available")["status"] != "True"


def test_perturbed_golden_set_is_held_not_ready_then_recovers(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    good = real_example("tiny-onnx", rename="perturbed")
    bad = real_example("tiny-onnx", rename="perturbed", perturb_golden=True)
    case = bad["spec"]["golden"]["cases"][0]["name"]
    models.create(bad)
    obj = models.wait_condition("perturbed", "GoldenPassed", "False", timeout_s=180)
    assert case in condition(obj, "GoldenPassed")["message"]
    assert case in str(obj["status"]["golden"].get("failedCases")), obj["status"]["golden"]
    assert obj["status"]["phase"] != "Ready"
    (pod,) = pods(real_api, real_namespace, "perturbed")
    server = next(s for s in pod.status.container_statuses if s.name == "server")
    assert server.state.running is not None
    assert not server.ready

    models.patch("perturbed", {"spec": {"golden": good["spec"]["golden"]}})
    models.wait_condition("perturbed", "GoldenPassed", "True", timeout_s=180)
    models.wait_available("perturbed", timeout_s=60)


def test_restricted_pod_security_namespace(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(real_api)
    core.patch_namespace(
        real_namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    models = Models(real_api, real_namespace)
    models.create(real_example("tiny-onnx"))
    models.wait_condition("tiny", "GoldenPassed", "True", timeout_s=180)
    (pod,) = wait_for(lambda: pods(real_api, real_namespace, "tiny"), 30, "the pod")
    assert pod.spec.node_name == NODE
    assert pod.spec.security_context.run_as_non_root
