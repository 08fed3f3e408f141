"""Quarantine on the real node (issue 18): one of two replicas is made to go wrong after it started right
(the server's debug.perturbOutputsAfterCalls, set through the operator's debug annotation). Its next
periodic golden check takes it out of the Service's endpoints, the operator records it (status, Event),
evicts it after spec.quarantine.replaceAfterFailedChecks failed checks and the Deployment replaces it;
the PodDisruptionBudget is never violated and the other replica serves throughout."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from kubernetes import client

from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.realnode import infer, outputs_by_name, pods, real_example

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

NAME = "wrong"
PERIOD_S = 10  # spec.golden.periodSeconds: the operator reads servers at most this often
AFTER_CALLS = 5
# Readiness probe: every 2 s, 2 failures (builders/deployment.py); then the EndpointSlice is rewritten.
PROBE_S = 2 * 2
ANNOTATION = "serving.infergate.io/debug-perturb-outputs-after-calls"


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


class PdbWatch:
    """Polls the model's pods and its PDB until stopped: the fewest Ready pods seen, and every moment the
    PDB's currentHealthy was under its desiredHealthy."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.min_ready: int | None = None
        self.violations: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        policy = client.PolicyV1Api(self.api)
        deadline = time.monotonic() + 600
        while not self._stop.wait(0.5) and time.monotonic() < deadline:
            try:
                current = [
                    p for p in pods(self.api, self.namespace, NAME) if not p.metadata.deletion_timestamp
                ]
                pdb = policy.read_namespaced_pod_disruption_budget(NAME, self.namespace)
            except client.ApiException:
                continue
            count = sum(ready(p) for p in current)
            self.min_ready = count if self.min_ready is None else min(self.min_ready, count)
            status = pdb.status
            if status is not None and status.current_healthy < status.desired_healthy:
                self.violations.append(
                    f"currentHealthy {status.current_healthy} < desiredHealthy {status.desired_healthy}"
                )
            self.polls += 1

    def __enter__(self) -> PdbWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def endpoint_ready(api: client.ApiClient, namespace: str, pod_ip: str) -> bool | None:
    """Whether the Service's EndpointSlices list `pod_ip` as ready (None: not listed at all)."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={NAME}"
    )
    for item in slices.items:
        for endpoint in item.endpoints or []:
            if pod_ip in (endpoint.addresses or []):
                return bool(endpoint.conditions and endpoint.conditions.ready)
    return None


def events(api: client.ApiClient, namespace: str, reason: str) -> list[str]:
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    return [
        str(e.message) for e in items if e.reason == reason and e.involved_object.kind == "InferenceModel"
    ]


def test_replica_gone_wrong_leaves_the_service_and_is_replaced_within_the_pdb(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx", rename=NAME)
    body["metadata"]["annotations"] = {ANNOTATION: str(AFTER_CALLS)}
    body["spec"]["replicas"] = 2
    body["spec"]["golden"]["periodSeconds"] = PERIOD_S
    body["spec"]["quarantine"] = {"replaceAfterFailedChecks": 2, "maxReplacingPercent": 50}
    case = body["spec"]["golden"]["cases"][0]
    models.create(body)
    models.wait_condition(NAME, "GoldenPassed", "True", timeout_s=240)
    wait_for(
        lambda: len([p for p in pods(real_api, real_namespace, NAME) if ready(p)]) == 2 or None,
        120,
        "two ready replicas",
    )
    wait_for(lambda: models.get(NAME)["status"].get("readyReplicas") == 2 or None, 60, "readyReplicas 2")
    wrong, other = sorted(pods(real_api, real_namespace, NAME), key=lambda p: p.metadata.name)
    url = f"http://{wrong.status.pod_ip}:8080"
    wait_for(
        lambda: endpoint_ready(real_api, real_namespace, wrong.status.pod_ip),
        30,
        f"{wrong.metadata.name} in the Service's ready endpoints",
    )

    with PdbWatch(real_api, real_namespace) as watch:
        want = case["expected"]["y"]["data"]
        for _ in range(AFTER_CALLS):  # answered right; the switch counts them
            got = outputs_by_name(infer(url, NAME, case["inputs"]))["y"]["data"]
            assert got == pytest.approx(want, abs=1e-3)
        went_wrong = time.monotonic()
        got = outputs_by_name(infer(url, NAME, case["inputs"]))["y"]["data"]
        assert got != pytest.approx(want, abs=1e-3), "the debug switch did not perturb the output"

        wait_for(
            lambda: not endpoint_ready(real_api, real_namespace, wrong.status.pod_ip) or None,
            PERIOD_S + PROBE_S + 10,
            f"{wrong.metadata.name} to leave the Service's ready endpoints",
            interval_s=0.25,
        )
        left_after = time.monotonic() - went_wrong
        # The other replica still serves by its own IP (the Service keeps it).
        infer(f"http://{other.status.pod_ip}:8080", NAME, case["inputs"])

        def recorded() -> dict[str, Any] | None:
            quarantine = models.get(NAME)["status"].get("quarantine") or {}
            listed = [p for p in quarantine.get("pods") or [] if p["pod"] == wrong.metadata.name]
            replaced = [p for p in quarantine.get("replaced") or [] if p["pod"] == wrong.metadata.name]
            return listed[0] if listed else (replaced[0] if replaced else None)

        entry = wait_for(recorded, 3 * PERIOD_S + 15, "status.quarantine to name the pod", interval_s=0.5)
        assert entry.get("node") == wrong.spec.node_name

        def replaced() -> dict[str, Any] | None:
            quarantine = models.get(NAME)["status"].get("quarantine") or {}
            done = [p for p in quarantine.get("replaced") or [] if p["pod"] == wrong.metadata.name]
            return done[0] if done else None

        record = wait_for(replaced, 6 * PERIOD_S + 30, "the operator to replace the pod", interval_s=1)
        assert record["failedChecks"] >= 2
        assert record["case"] == case["name"]

        def back_to_two() -> list[client.V1Pod] | None:
            current = [p for p in pods(real_api, real_namespace, NAME) if not p.metadata.deletion_timestamp]
            names = {p.metadata.name for p in current}
            fresh = wrong.metadata.name not in names and len(current) == 2 and all(ready(p) for p in current)
            return current if fresh else None

        current = wait_for(back_to_two, 180, "a ready replacement", interval_s=1)
        assert other.metadata.name in {p.metadata.name for p in current}, "the good replica was replaced"
        models.wait_condition(NAME, "GoldenPassed", "True", timeout_s=60)

    suspected = events(real_api, real_namespace, "ReplicaGoldenFailed")
    assert any(wrong.metadata.name in m for m in suspected), suspected
    evicted = events(real_api, real_namespace, "ReplicaReplaced")
    assert any(wrong.metadata.name in m for m in evicted), evicted
    assert watch.polls > 10
    assert watch.violations == [], watch.violations
    assert watch.min_ready is not None
    assert watch.min_ready >= 1, "both replicas were out of service at once"
    # One golden period until the server's next check, then the readiness probe's failures (2 x 2 s).
    print(f"left the Service {left_after:.1f} s after going wrong (golden period {PERIOD_S} s)")
    assert left_after <= PERIOD_S + PROBE_S + 3, left_after
    quarantine = models.get(NAME)["status"].get("quarantine") or {}
    assert not [p for p in quarantine.get("pods") or [] if p["pod"] != wrong.metadata.name], quarantine
    assert httpx.get(f"http://{other.status.pod_ip}:8080/readyz").status_code == 200
