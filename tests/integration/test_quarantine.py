"""Quarantine's acting layer (quarantine_io.py) against the real API server of the local control plane.

kwok's pods run no server, so the golden reads are given here (a pod failing its run while its sibling
passes); everything after the decision is real: the Eviction API (with a real PodDisruptionBudget, which
may refuse), the Deployment replacing the evicted pod, and the opt-in node taint (on a fake node made for
the test). The whole loop with real servers is tests/realnode/test_quarantine.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from infergate_operator.golden import PodRead, PodTarget
from infergate_operator.kube import KubeClient
from infergate_operator.quarantine import TAINT_KEY, run_stamp
from infergate_operator.quarantine_io import Quarantines
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import InferenceModelSpec
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.test_watch import connect
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0
LABELS = {"app": "quarantined"}
SPEC = InferenceModelSpec.model_validate(
    {
        "model": {"uri": "s3://m/model.onnx", "format": "onnx", "sha256": "0" * 64},
        "runtime": {"backend": "onnxruntime"},
        "replicas": 2,
        "golden": {
            "periodSeconds": 10,
            "cases": [{"name": "c", "inputs": {}, "expected": {}}],
        },
        "quarantine": {"replaceAfterFailedChecks": 2, "maxReplacingPercent": 50},
    }
)


def deployment(node: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "quarantined"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "server", "image": "example.invalid/server:1"}],
                },
            },
        },
    }


def pdb(max_unavailable: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "quarantined"},
        "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": LABELS}},
    }


def report(result: str, at: float) -> dict[str, Any]:
    ok = result == "Passed"
    return {"result": result, "checkedAt": at, "cases": [{"name": "c", "result": result, "passed": ok}]}


@pytest.fixture
def fake_node(api_client: client.ApiClient) -> Iterator[str]:
    """A fake node of the test's own, so that a taint never reaches a node other tests schedule on."""
    name = f"quarantine-{uuid.uuid4().hex[:6]}"
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
        },
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    }  # fmt: skip
    core = client.CoreV1Api(api_client)
    core.create_node(node)
    try:
        yield name
    finally:
        core.delete_node(name)


def ready_pods(api_client: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    items = (
        client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="app=quarantined").items
    )
    return sorted(
        (
            p
            for p in items
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ),
        key=lambda p: p.metadata.name,
    )


def setup(
    api_client: client.ApiClient, namespace: str, node: str, max_unavailable: int
) -> list[client.V1Pod]:
    apps, policy = client.AppsV1Api(api_client), client.PolicyV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment(node))
    policy.create_namespaced_pod_disruption_budget(namespace, pdb(max_unavailable))

    def both() -> list[client.V1Pod] | None:
        current = ready_pods(api_client, namespace)
        return current if len(current) == 2 else None

    current = wait_for(both, 60, "two Ready pods")

    def counted() -> bool | None:
        status = policy.read_namespaced_pod_disruption_budget("quarantined", namespace).status
        return (status is not None and status.current_healthy == 2) or None

    wait_for(counted, 30, "the PDB to count both pods")
    return current


async def observe(
    kube: KubeClient,
    quarantines: Quarantines,
    key: tuple[str, str],
    pods: list[client.V1Pod],
    api_client: client.ApiClient,
) -> Any:
    """Pod 0 fails its second run in a row, pod 1 passes."""
    bad, good = pods
    targets = tuple(
        PodTarget(p.metadata.name, f"http://{p.metadata.name}:8080", True, node=p.spec.node_name)
        for p in pods
    )
    reads = {
        bad.metadata.name: PodRead(bad.metadata.name, targets[0].address, T0 + 10, report("Failed", T0 + 10)),
        good.metadata.name: PodRead(
            good.metadata.name, targets[1].address, T0 + 10, report("Passed", T0 + 10)
        ),
    }
    first = {"pod": bad.metadata.name, "node": bad.spec.node_name, "failedChecks": 1, "case": "c"}
    old_status = {"quarantine": {"pods": [{**first, "lastFailedAt": run_stamp(T0)}]}}
    raw = api_client.sanitize_for_serialization(
        client.CoreV1Api(api_client).list_namespaced_pod(key[0], label_selector="app=quarantined")
    )
    return await quarantines.observe(
        key, SPEC, raw["items"], targets, reads, old_status, replicas=2, rolled_out=True
    )


def observe_once(
    controlplane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    api_client: client.ApiClient,
    namespace: str,
    pods: list[client.V1Pod],
) -> Any:
    """One observation of model `m` with the default settings, on a connection of its own."""

    async def go() -> Any:
        kube = connect(controlplane, monkeypatch)
        try:
            return await observe(
                kube, Quarantines(kube, OperatorSettings()), (namespace, "m"), pods, api_client
            )
        finally:
            await kube.close()

    return asyncio.run(go())


def test_a_pod_due_is_evicted_and_replaced(
    controlplane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    fake_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = setup(api_client, namespace, fake_node, max_unavailable=1)

    observation = observe_once(controlplane, monkeypatch, api_client, namespace, pods)
    assert [s.pod for s in observation.evicted] == [pods[0].metadata.name]
    assert observation.suspects == ()

    def replaced() -> list[client.V1Pod] | None:
        current = ready_pods(api_client, namespace)
        names = {p.metadata.name for p in current}
        return current if len(current) == 2 and pods[0].metadata.name not in names else None

    current = wait_for(replaced, 60, "the Deployment to replace the evicted pod")
    assert pods[1].metadata.name in {p.metadata.name for p in current}


def test_the_pdb_can_refuse_and_the_pod_is_held(
    controlplane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    fake_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = setup(api_client, namespace, fake_node, max_unavailable=0)

    observation = observe_once(controlplane, monkeypatch, api_client, namespace, pods)
    assert observation.evicted == ()
    (held,) = observation.suspects
    assert held.pod == pods[0].metadata.name
    assert "PodDisruptionBudget" in held.held
    assert {p.metadata.name for p in ready_pods(api_client, namespace)} == {p.metadata.name for p in pods}


def test_pods_of_two_models_failing_on_one_node_taint_it_when_allowed(
    controlplane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    fake_node: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = setup(api_client, namespace, fake_node, max_unavailable=0)  # nothing evicted: both stay suspect
    core = client.CoreV1Api(api_client)
    asked: list[tuple[str, str]] = []

    async def go(settings: OperatorSettings) -> list[Any]:
        kube = connect(controlplane, monkeypatch)
        quarantines = Quarantines(kube, settings, on_change=asked.append)
        try:
            first = await observe(kube, quarantines, (namespace, "a"), pods, api_client)
            second = await observe(kube, quarantines, (namespace, "b"), pods, api_client)
            again = await observe(kube, quarantines, (namespace, "a"), pods, api_client)
            return [first, second, again]
        finally:
            await kube.close()

    off = asyncio.run(go(OperatorSettings()))
    assert all(o.nodes == () for o in off)
    assert not [t for t in core.read_node(fake_node).spec.taints or [] if t.key == TAINT_KEY]

    first, second, again = asyncio.run(go(OperatorSettings(quarantine_taint_nodes=True)))
    assert first.nodes == ()
    models = (f"{namespace}/a", f"{namespace}/b")
    assert second.nodes == ((fake_node, models),)
    assert again.nodes == ((fake_node, models),)
    assert asked == [(namespace, "a")]  # the other model is told to refresh its status
    taints = [t for t in core.read_node(fake_node).spec.taints or [] if t.key == TAINT_KEY]
    assert [(t.value, t.effect) for t in taints] == [("GoldenFailedOnSeveralModels", "NoSchedule")]
    events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={fake_node}").items
    # Ours only: the node controller posts its own (RegisteredNode) for a new node whenever it gets to it.
    ours = [e.reason for e in events if e.source is not None and e.source.component == "infergate-operator"]
    assert ours == ["GoldenFailedOnSeveralModels"]
