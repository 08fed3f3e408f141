"""The local control plane is a real Kubernetes: scheduling, extended resources, GC and CRD validation."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration

GPU_TOLERATION = client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def gpu_pod_spec(gpus: int, product: str | None = None) -> client.V1PodSpec:
    return client.V1PodSpec(
        containers=[
            client.V1Container(
                name="main",
                image="registry.invalid/infergate/never-pulled:0",
                resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
            )
        ],
        tolerations=[GPU_TOLERATION],
        node_selector={"nvidia.com/gpu.product": product} if product else None,
    )


def test_gpu_deployment_lands_on_requested_product(api_client: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    labels = {"app": "gpu-demo"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="gpu-demo"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=gpu_pod_spec(1, "NVIDIA-A10G"),
                ),
            ),
        ),
    )

    def ready_pods() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=gpu-demo").items
        ready = [
            p
            for p in pods
            if p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready if len(ready) == 2 else None

    pods = wait_for(ready_pods, 60, "2 GPU pods Running and Ready")
    for pod in pods:
        node = core.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A10G"
    deployment = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment("gpu-demo", namespace)).status.available_replicas == 2 and d
        ),
        30,
        "deployment available",
    )
    assert deployment.status.ready_replicas == 2


def test_too_many_gpus_stays_pending_with_failed_scheduling(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="greedy"), spec=gpu_pod_spec(9))
    )

    def failed_scheduling() -> list[client.CoreV1Event] | None:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=greedy,reason=FailedScheduling"
        ).items
        return events or None

    events = wait_for(failed_scheduling, 60, "a FailedScheduling event")
    assert "nvidia.com/gpu" in events[0].message
    assert core.read_namespaced_pod("greedy", namespace).status.phase == "Pending"


def test_garbage_collector_deletes_dependents(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"), data={"a": "1"})
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid, block_owner_deletion=True
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(dependent_gone, 60, "the garbage collector to delete the dependent")


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.infergate.io"},
    "spec": {
        "group": "test.infergate.io",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_structural_crd_rejects_invalid_object(api_client: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as error:
        if error.status != 409:
            raise

    def established() -> bool:
        crd = ext.read_custom_resource_definition("widgets.test.infergate.io")
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    wait_for(established, 30, "the CRD to be established")
    custom = client.CustomObjectsApi(api_client)
    body = {"apiVersion": "test.infergate.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "test.infergate.io", "v1", namespace, "widgets", {**body, "spec": {"size": 42}}
        )
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body
    assert "should be less than or equal to 10" in rejected.value.body
    created = custom.create_namespaced_custom_object(
        "test.infergate.io", "v1", namespace, "widgets", {**body, "spec": {"size": 3}}
    )
    assert created["spec"]["size"] == 3
