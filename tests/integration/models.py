"""InferenceModel helpers for integration tests: create, read, wait for status, list children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.integration.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "serving.infergate.io", "v1alpha1", "inferencemodels"
MODEL_LABEL = "serving.infergate.io/inferencemodel"


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "models" / name / "inferencemodel.yaml").read_text()
    )
    return body


def minimal(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {
            "uri": "pvc://models/tiny/model.onnx",
            "format": "onnx",
            "sha256": "d57519f20498cf9622e74e30ef7156c88af5114539c9b4ba375d81cd415398bb",
        },
        "runtime": {"backend": "onnxruntime"},
        "hardware": {"cpu": "100m", "memory": "128Mi"},
        "replicas": 1,
    }
    base.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": base,
    }


class Models:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        # Strict, as kubectl validates by default: unknown fields are refused, not silently pruned.
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body, field_validation="Strict"
        )
        return created

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return obj

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )
        return obj

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout_s: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get(name)
            current = obj.get("status") or {}
            if current.get("observedGeneration") != obj["metadata"]["generation"]:
                return None
            cond = next((c for c in current.get("conditions") or [] if c["type"] == kind), None)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return obj
            return None

        def described() -> str:
            return f"{name}: {kind}={status} {reason or ''} (status at the deadline: {self._status(name)})"

        return wait_for(probe, timeout_s, described)

    def wait_available(self, name: str, timeout_s: float = 60) -> dict[str, Any]:
        return self.wait_condition(name, "Available", "True", timeout_s=timeout_s)

    def _status(self, name: str) -> Any:
        """The status's message, phase, observed generation and conditions: what a timed-out wait saw."""
        try:
            obj = self.get(name)
        except client.ApiException as error:
            return error.reason
        status = obj.get("status") or {}
        conditions = [
            f"{c.get('type')}={c.get('status')}/{c.get('reason')}: {c.get('message')}"
            for c in status.get("conditions") or []
        ]
        return {
            "generation": obj["metadata"].get("generation"),
            "observedGeneration": status.get("observedGeneration"),
            "phase": status.get("phase"),
            "message": status.get("message"),
            "conditions": conditions,
        }

    def children(self, name: str) -> dict[str, list[str]]:
        """Every object labelled as this model's child, by kind."""
        selector = f"{MODEL_LABEL}={name}"
        ns = self.namespace
        autoscaling = client.AutoscalingV2Api(self.api)
        policy = client.PolicyV1Api(self.api)
        found = {
            "ConfigMap": self.core.list_namespaced_config_map(ns, label_selector=selector).items,
            "Service": self.core.list_namespaced_service(ns, label_selector=selector).items,
            "Deployment": self.apps.list_namespaced_deployment(ns, label_selector=selector).items,
            "HorizontalPodAutoscaler": autoscaling.list_namespaced_horizontal_pod_autoscaler(
                ns, label_selector=selector
            ).items,
            "PodDisruptionBudget": policy.list_namespaced_pod_disruption_budget(
                ns, label_selector=selector
            ).items,
        }
        return {kind: sorted(o.metadata.name for o in items) for kind, items in found.items() if items}


def models_pvc(api: client.ApiClient, namespace: str, host_path: str | None = None) -> None:
    """A bound ReadOnlyMany PVC named `models` (what the examples' pvc://models/... URIs name), over a
    hostPath volume: `host_path` (a folder that must exist, for real pods) or a per-namespace path."""
    core = client.CoreV1Api(api)
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"models-{namespace}"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadOnlyMany"],
                # A real folder is never the controller's to delete.
                "persistentVolumeReclaimPolicy": "Retain" if host_path else "Delete",
                "storageClassName": "",
                "hostPath": (
                    {"path": host_path, "type": "Directory"}
                    if host_path
                    else {"path": f"/var/lib/infergate/{namespace}"}
                ),
                "claimRef": {"namespace": namespace, "name": "models"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "models"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": f"models-{namespace}",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
