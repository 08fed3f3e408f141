"""Canaries with real pods: the real Argo Rollouts controller walks a Rollout whose pods run the server
image on the real node, its gates read the canary's real golden endpoint (through the canary Service's
cluster IP) and `up`'s Prometheus, which scrapes the pods' real latency and request metrics."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client

from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.realnode import infer_when_routed, real_example, service_url

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

ARGO = ("argoproj.io", "v1alpha1")
# The pause lets the canary take traffic and Prometheus (2 s scrapes) gather a window of it before the
# gates measure: rate() over the window needs two samples of the canary's counters.
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "20s"}}, {"analysis": {}}]
GATES: dict[str, Any] = {
    "maxP95LatencySeconds": 1.0,
    "maxErrorRate": 0.05,
    "interval": "5s",
    "count": 2,
    "failureLimit": 1,  # a gate fails after more than failureLimit failed measurements of its count
    "window": "20s",
}


class Traffic:
    """Requests through the model's Service (every ready pod of either revision) until stopped, each on a
    new connection: kube-proxy balances connections, so a kept-alive one would stay on one pod."""

    def __init__(self, url: str, body: dict[str, Any]) -> None:
        self.url, self.body = url, body
        self.outcomes: Counter[str] = Counter()
        self.failures: list[tuple[float, str]] = []  # (seconds since the start, outcome) of each non-200
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        deadline = start + 400  # bounded, whatever happens to the test
        with httpx.Client(timeout=5, headers={"connection": "close"}) as http:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    outcome = str(http.post(self.url, json=self.body).status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                self.outcomes[outcome] += 1
                if outcome != "200":
                    self.failures.append((round(time.monotonic() - start, 2), outcome))
                time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def canary_tiny(name: str) -> dict[str, Any]:
    body = real_example("tiny-onnx", rename=name)
    body["spec"]["rollout"] = {"strategy": "Canary", "canary": {"steps": STEPS, "analysis": GATES}}
    return body


def progressing_of(status: dict[str, Any]) -> tuple[str, str]:
    """(status, reason) of the Progressing condition in one read of the model's status."""
    conditions = status.get("conditions") or []
    found: dict[str, Any] = next((c for c in conditions if c["type"] == "Progressing"), {})
    return str(found.get("status")), str(found.get("reason"))


def progressing(models: Models, name: str) -> tuple[str, str]:
    return progressing_of(models.get(name).get("status") or {})


def analysis_runs(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(*ARGO, namespace, "analysisruns")
    return cast(list[dict[str, Any]], cast(dict[str, Any], listed)["items"])


def measured(runs: list[dict[str, Any]], metric: str) -> list[str]:
    """Every value Argo measured for `metric` across the runs."""
    return [
        str(m.get("value"))
        for run in runs
        for result in (run.get("status") or {}).get("metricResults") or []
        if result["name"] == metric
        for m in result.get("measurements") or []
    ]


def analysis_summary(api: client.ApiClient, namespace: str) -> str:
    """Each AnalysisRun's phase, message and measurements, for a failure's message."""
    lines = []
    for run in analysis_runs(api, namespace):
        status = run.get("status") or {}
        lines.append(f"{run['metadata']['name']}: {status.get('phase')} {status.get('message', '')}")
        for result in status.get("metricResults") or []:
            values = [
                (m.get("phase"), m.get("value"), m.get("message")) for m in result.get("measurements") or []
            ]
            lines.append(f"  {result['name']} {result.get('phase')}: {values[-3:]}")
    return "\n".join(lines)


def golden_service_summary(api: client.ApiClient, namespace: str, name: str) -> str:
    """The golden Service's selector and endpoints, the Rollout's hashes, the pods, for a failure."""
    core = client.CoreV1Api(api)
    service = core.read_namespaced_service(f"{name}-golden", namespace)
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}-golden"
    )
    endpoints = [(e.addresses, e.conditions.ready) for s in slices.items for e in s.endpoints or []]
    rollout = client.CustomObjectsApi(api).get_namespaced_custom_object(*ARGO, namespace, "rollouts", name)
    status = cast(dict[str, Any], rollout).get("status") or {}
    pods = [
        (p.metadata.name, p.status.pod_ip, (p.metadata.labels or {}).get("rollouts-pod-template-hash"))
        for p in core.list_namespaced_pod(namespace).items
    ]
    selector, ip = service.spec.selector, service.spec.cluster_ip
    hashes = f"currentPodHash {status.get('currentPodHash')} stableRS {status.get('stableRS')}"
    config = core.read_namespaced_config_map(f"{name}-config", namespace).data or {}
    digests = {key: hashlib.sha256(value.encode()).hexdigest()[:12] for key, value in config.items()}
    wanted = [
        (rs.metadata.name, env.value)
        for rs in client.AppsV1Api(api).list_namespaced_replica_set(namespace).items
        for container in rs.spec.template.spec.containers
        for env in container.env or []
        if env.name == "INFERGATE_CONFIG_DIGESTS"
    ]
    golden = yaml.safe_load(config.get("server.yaml", "{}")).get("golden")
    return (
        f"golden Service selector {selector} ip {ip} endpoints {endpoints}\nrollout {hashes}\npods {pods}\n"
        f"ConfigMap digests {digests}; ReplicaSets want {wanted}\nConfigMap golden {golden}"
    )


def request_body(model: dict[str, Any]) -> dict[str, Any]:
    case = model["spec"]["golden"]["cases"][0]
    return {"inputs": [{"name": k, **v} for k, v in case["inputs"].items()]}


def first_revision(models: Models, body: dict[str, Any]) -> str:
    models.create(body)
    name = body["metadata"]["name"]
    models.wait_condition(name, "GoldenPassed", "True", timeout_s=180)
    wait_for(lambda: progressing(models, name) == ("False", "CanaryPromoted"), 120, "the first revision")
    # kube-proxy programs the Service a moment after the pod turns Ready: traffic starts once it routes.
    infer_when_routed(
        service_url(models.api, models.namespace, name), name, body["spec"]["golden"]["cases"][0]["inputs"]
    )
    return str(models.get(name)["status"]["revision"])


def test_good_revision_passes_real_gates_and_is_promoted(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = canary_tiny("cgood")
    first = first_revision(models, body)
    url = f"{service_url(real_api, real_namespace, 'cgood')}/v2/models/cgood/infer"
    with Traffic(url, request_body(body)) as traffic:
        models.patch("cgood", {"spec": {"runtime": {"maxQueueDepth": 65}}})

        def promoted() -> dict[str, Any] | None:
            # One read: the condition and the phase of two reads could come from two status writes.
            status: dict[str, Any] = models.get("cgood").get("status") or {}
            done = progressing_of(status) == ("False", "CanaryPromoted") and status["revision"] != first
            return status if done else None

        final = wait_for(promoted, 300, "the second revision to be promoted", interval_s=1)
    assert final["phase"] == "Ready"
    assert final["stableRevision"] == final["revision"]
    golden = next(c for c in final["conditions"] if c["type"] == "GoldenPassed")
    assert golden["status"] == "True", golden
    assert final["revision"] in golden["message"], golden
    runs = analysis_runs(real_api, real_namespace)
    # The gates measured real values: the golden endpoint answered, Prometheus had the canary's samples.
    latencies = [float(v) for v in measured(runs, "p95-latency")]
    assert any(v == v for v in latencies), runs  # at least one is not NaN
    assert all(v <= GATES["maxP95LatencySeconds"] for v in latencies if v == v), latencies
    assert measured(runs, "golden"), runs
    assert set(traffic.outcomes) == {"200"}, (traffic.outcomes, traffic.failures)
    assert traffic.outcomes["200"] > 50, traffic.outcomes


def test_revision_failing_golden_never_serves_and_is_aborted(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = canary_tiny("cbad")
    first_revision(models, body)
    url = f"{service_url(real_api, real_namespace, 'cbad')}/v2/models/cbad/infer"
    bad = real_example("tiny-onnx", rename="cbad", perturb_golden=True)
    with Traffic(url, request_body(body)) as traffic:
        models.patch("cbad", {"spec": {"golden": bad["spec"]["golden"]}})
        aborted = ("False", "CanaryAborted")
        try:
            wait_for(lambda: progressing(models, "cbad") == aborted, 240, "the canary to abort")
        except AssertionError as error:
            summary = analysis_summary(real_api, real_namespace)
            raise AssertionError(
                f"{error}\n{summary}\n{golden_service_summary(real_api, real_namespace, 'cbad')}"
            ) from None
        time.sleep(2)
    status = models.get("cbad")["status"]
    assert status["canary"]["failedMetric"] == "golden", status
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "CanaryAborted", degraded
    assert bad["spec"]["golden"]["cases"][0]["name"] in degraded["message"], degraded
    # The perturbed revision's pod never turned Ready, so the Service never sent it a request.
    assert set(traffic.outcomes) == {"200"}, (traffic.outcomes, traffic.failures)
    assert traffic.outcomes["200"] > 20, traffic.outcomes


def test_revision_slow_on_live_traffic_is_aborted_by_the_latency_gate(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    """A revision that passes its golden set but answers live requests slowly (the backend's test-only
    delay after its start-up calls: warmup and the two golden cases) fails the p95 gate on the latencies
    Prometheus scraped from its pod, and is aborted; the stable keeps serving."""
    models = Models(real_api, real_namespace)
    body = canary_tiny("cslow")
    first = first_revision(models, body)
    url = f"{service_url(real_api, real_namespace, 'cslow')}/v2/models/cslow/infer"
    slow = {"debugDelayMs": 1500, "debugDelayAfterCalls": 3}
    with Traffic(url, request_body(body)) as traffic:
        models.patch("cslow", {"spec": {"runtime": {"args": slow}}})

        def decided() -> tuple[str, str] | None:
            status: dict[str, Any] = models.get("cslow").get("status") or {}  # one read, as above
            state = progressing_of(status)
            promoted = state == ("False", "CanaryPromoted") and status.get("revision") != first
            return state if promoted or state == ("False", "CanaryAborted") else None

        outcome = wait_for(decided, 240, "the canary to be aborted or promoted", interval_s=1)
    runs_seen = analysis_summary(real_api, real_namespace)
    summary = f"{runs_seen}\ntraffic {traffic.outcomes} {traffic.failures[:10]}"
    assert outcome == ("False", "CanaryAborted"), summary
    status = models.get("cslow")["status"]
    assert status["canary"]["failedMetric"] == "p95-latency", status
    runs = analysis_runs(real_api, real_namespace)
    latencies = [float(v) for v in measured(runs, "p95-latency") if v not in ("", "None")]
    assert any(v > GATES["maxP95LatencySeconds"] for v in latencies if v == v), latencies
    # Golden passed on the slow revision: the latency gate, not the golden gate, stopped it.
    golden_phases = [
        m.get("phase")
        for run in runs
        for result in (run.get("status") or {}).get("metricResults") or []
        if result["name"] == "golden"
        for m in result.get("measurements") or []
    ]
    assert "Failed" not in golden_phases, analysis_summary(real_api, real_namespace)
    # Slow answers are still answers: every request was served, by one revision or the other.
    assert set(traffic.outcomes) == {"200"}, (traffic.outcomes, traffic.failures)
