"""What builders need besides the spec: names, owner, labels, hashes, the image; built once per reconcile.

Pure: `make_context` takes the object's metadata and the settings, never a client or a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import API_VERSION, GROUP, KIND, GoldenCase, InferenceModelSpec

MANAGER = "infergate"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = f"{GROUP}/inferencemodel"
LABEL_SERVICE = f"{GROUP}/service"
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_REVISION = f"{GROUP}/revision"
# Tests only, honoured with settings.debug_fault_injection: rendered into the server's
# debug.perturbOutputsAfterCalls (server/infergate_server/fault.py).
ANNOTATION_DEBUG_PERTURB = f"{GROUP}/debug-perturb-outputs-after-calls"

# Sections of the spec that shape pods; replicas, autoscaling, service and rollout do not restart pods.
POD_SECTIONS = ("model", "runtime", "hardware", "scheduling", "golden", "image")


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex SHA-256 prefix of the canonical JSON of `value` (sorted keys), stable across processes."""
    blob = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:length]


def spec_dump(spec: InferenceModelSpec) -> dict[str, Any]:
    """The spec as the API shows it: camelCase keys, unset optionals left out."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def pod_spec_hash(spec: InferenceModelSpec) -> str:
    """Hash of the spec sections that shape pods (see POD_SECTIONS)."""
    dumped = spec_dump(spec)
    return stable_hash({key: dumped.get(key) for key in POD_SECTIONS})


@dataclass(frozen=True)
class BuildContext:
    """Everything a builder may use besides the spec. Frozen; no I/O behind any attribute."""

    name: str
    namespace: str
    uid: str
    image: str
    spec_hash: str
    settings: OperatorSettings = field(default_factory=OperatorSettings)
    golden_cases: tuple[GoldenCase, ...] | None = None
    drift_baseline: str | None = None
    """The text of spec.monitoring.inputDrift.baselineConfigMapRef, read by the caller."""
    """Cases read from spec.golden.configMapRef by the caller; None when the spec carries them inline."""
    prometheus_operator: bool = False
    """The caller found monitoring.coreos.com/v1 served: ServiceMonitor/PrometheusRule may be built."""
    golden_service_ip: str | None = None
    """The `<name>-golden` Service's cluster IP, read by the caller only when the golden URL template asks."""
    candidate_hash: str | None = None
    """A Canary model's newest pod-template hash (the Rollout's status.currentPodHash), read by the caller."""
    keda: bool = False
    """The caller found keda.sh/v1alpha1 served: a ScaledObject owns scale instead of a plain HPA."""
    debug_perturb_after_calls: int | None = None
    """Tests only: the server's debug.perturbOutputsAfterCalls (see ANNOTATION_DEBUG_PERTURB)."""

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @property
    def selector_labels(self) -> dict[str, str]:
        """Labels the workload selects its pods by; never change them (selectors are immutable)."""
        return {LABEL_NAME: "infergate-server", LABEL_INSTANCE: self.name}

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels,
            LABEL_COMPONENT: "model-server",
            LABEL_MANAGED_BY: MANAGER,
            LABEL_MODEL: self.name,
        }

    def metadata(self, name: str | None = None, **extra: Any) -> dict[str, Any]:
        """Child metadata: name (default: the model's), namespace, labels and the controller owner."""
        return {
            "name": name or self.name,
            "namespace": self.namespace,
            "labels": dict(self.labels),
            "ownerReferences": [self.owner_reference],
            **extra,
        }

    @property
    def config_map_name(self) -> str:
        return f"{self.name}-config"

    @property
    def service_name(self) -> str:
        return self.name

    @property
    def endpoint(self) -> str:
        return f"http://{self.service_name}.{self.namespace}.svc"


def make_context(
    metadata: Mapping[str, Any],
    spec: InferenceModelSpec,
    settings: OperatorSettings,
    golden_cases: tuple[GoldenCase, ...] | None = None,
    prometheus_operator: bool = False,
    golden_service_ip: str | None = None,
    candidate_hash: str | None = None,
    drift_baseline: str | None = None,
    keda: bool = False,
) -> BuildContext:
    """Context from the InferenceModel's `metadata` (name, namespace, uid), its parsed spec and settings."""
    return BuildContext(
        name=str(metadata["name"]),
        namespace=str(metadata["namespace"]),
        uid=str(metadata.get("uid", "")),
        image=spec.image or settings.server_image,
        spec_hash=pod_spec_hash(spec),
        settings=settings,
        golden_cases=golden_cases,
        prometheus_operator=prometheus_operator,
        golden_service_ip=golden_service_ip,
        candidate_hash=candidate_hash,
        drift_baseline=drift_baseline,
        keda=keda,
        debug_perturb_after_calls=debug_perturb_after_calls(metadata, settings),
    )


def debug_perturb_after_calls(metadata: Mapping[str, Any], settings: OperatorSettings) -> int | None:
    """The debug annotation's count, when the operator allows fault injection and it is a whole number."""
    if not settings.debug_fault_injection:
        return None
    value = str((metadata.get("annotations") or {}).get(ANNOTATION_DEBUG_PERTURB, "")).strip()
    return int(value) if value.isdigit() else None
