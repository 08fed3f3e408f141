"""Nodes deleted under a model's replicas: status names the nodes and says what became of the replicas.

Real control plane: kwok's fake GPU nodes of a product of the test's own (one GPU each, so each replica
has its node), deleted at once; kube-controller-manager's pod garbage collector removes the pods bound to
them (about 40 s later) and the scheduler finds no other node for their replacements.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import Models, minimal
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def gpu_node(name: str, product: str) -> dict[str, Any]:
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "1"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", "nvidia.com/gpu.product": product},
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"allocatable": capacity, "capacity": capacity},
    }


@pytest.fixture
def product_nodes(api_client: client.ApiClient) -> Iterator[tuple[str, list[str]]]:
    """Two one-GPU fake nodes of a product no other test asks for."""
    suffix = uuid.uuid4().hex[:6]
    product, names = f"TEST-LOST-{suffix}", [f"lost-{suffix}-{i}" for i in range(2)]
    core = client.CoreV1Api(api_client)
    for name in names:
        core.create_node(gpu_node(name, product))
    try:
        yield product, names
    finally:
        for name in names:
            try:
                core.delete_node(name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


def scheduling(models: Models, name: str) -> dict[str, Any] | None:
    return (models.get(name).get("status") or {}).get("scheduling")


def degraded(models: Models, name: str) -> dict[str, Any]:
    condition = models.condition(name, "Degraded")
    assert condition is not None
    return condition


def test_deleted_nodes_are_named_with_the_replicas_lost_and_the_unschedulable_count(
    crds: ControlPlane,
    api_client: client.ApiClient,
    model_namespace: str,
    product_nodes: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    product, nodes = product_nodes
    models = Models(api_client, model_namespace)
    core = client.CoreV1Api(api_client)
    operator = OperatorProcess(crds.env, tmp_path / "operator.log").start()
    try:
        models.create(minimal("lost", replicas=2, hardware={"gpu": {"count": 1, "product": product}}))

        def placed() -> list[str] | None:
            pods = core.list_namespaced_pod(model_namespace, label_selector="app.kubernetes.io/instance=lost")
            on = sorted(
                p.spec.node_name for p in pods.items if p.spec.node_name and p.status.phase == "Running"
            )
            return on if on == nodes else None

        wait_for(placed, 60, "one replica on each node of the product")
        wait_for(
            lambda: (models.condition("lost", "Available") or {}).get("status") == "True", 60, "available"
        )
        assert scheduling(models, "lost") is None

        for name in nodes:
            core.delete_node(name)

        # At once (the Node watch), while the pods are still bound to the deleted nodes.
        lost = wait_for(
            lambda: scheduling(models, "lost"), 15, lambda: f"status.scheduling: {models.get('lost')}"
        )
        assert sorted(n["node"] for n in lost["lostNodes"]) == nodes
        assert lost["lostReplicas"] == 2
        condition = degraded(models, "lost")
        assert (condition["status"], condition["reason"]) == ("True", "NodesLost")
        assert f"2 replica(s) lost with deleted node(s) {nodes[0]}, {nodes[1]}" in condition["message"]

        # podgc removes the bound pods; nothing else carries the product: both replacements stay Pending.
        def unschedulable() -> dict[str, Any] | None:
            now = scheduling(models, "lost")
            return now if now and now["unschedulableReplicas"] == 2 else None

        after = wait_for(unschedulable, 120, lambda: f"unschedulable replacements: {models.get('lost')}")
        assert sorted(n["node"] for n in after["lostNodes"]) == nodes  # remembered though the pods are gone
        message = degraded(models, "lost")["message"]
        assert "2 pod(s) cannot be scheduled" in message
        assert "nodes are available" in message  # the scheduler's own words

        # Nodes of the product come back: the replacements run and the loss is history.
        for name in nodes:
            core.create_node(gpu_node(name, product))
        wait_for(
            lambda: scheduling(models, "lost") is None, 60, lambda: f"loss cleared: {models.get('lost')}"
        )
        assert degraded(models, "lost")["reason"] == "AsExpected"
    finally:
        operator.stop()
