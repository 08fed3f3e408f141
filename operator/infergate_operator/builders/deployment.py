"""The pod template every workload shares (Deployment now, Argo Rollout for canaries) and the Deployment."""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any
from urllib.parse import urlsplit

from infergate_operator.builders.configmap import (
    CONFIG_DIR,
    CONFIG_PATH,
    CONTAINER_PORT,
    MODEL_IMAGE_DIR,
    MODELS_DIR,
    NODE_CACHE_DIR,
    READINESS_PROBE_TIMEOUT_SECONDS,
    TENANT_KEYS_DIR,
    TLS_DIR,
    build_configmap,
    node_cache_key,
)
from infergate_operator.context import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_SPEC_HASH,
    BuildContext,
    stable_hash,
)
from infergate_operator.spec import InferenceModelSpec

SERVER_CONTAINER = "server"
FETCH_CONTAINER = "fetch"
PVC_ROOT = "/mnt/pvc"
REGISTRY_AUTH_DIR = "/etc/infergate-registry"  # spec.model.pullSecretName, read-only, fetch container only
REGISTRY_AUTH_FILE = f"{REGISTRY_AUTH_DIR}/.dockerconfigjson"
RUN_AS = 65532  # the distroless "nonroot" uid/gid
PROBE_PERIOD_SECONDS = 10
# /healthz answers as soon as the server listens (the model loads behind it): probing it every second
# lets readiness start checking ~1 s after the process starts instead of up to 10 s later.
STARTUP_PROBE_PERIOD_SECONDS = 1
READINESS_PROBE_PERIOD_SECONDS = 2
LLM_BACKENDS = frozenset({"vllm", "transformers"})
TOPOLOGY_KEYS = {"zone": "topology.kubernetes.io/zone", "node": "kubernetes.io/hostname"}

CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def termination_grace_seconds(ctx: BuildContext) -> int:
    """The server's shutdown delay and drain, and a few seconds for uvicorn to close, before SIGKILL."""
    settings = ctx.settings
    return max(30, math.ceil(settings.shutdown_delay_seconds + settings.drain_timeout_seconds) + 5)


def pvc_claim(uri: str) -> str | None:
    """The claim of a pvc://<claim>/<path> artifact; it is mounted read-only at /mnt/pvc/<claim>."""
    parts = urlsplit(uri)
    return parts.netloc if parts.scheme == "pvc" else None


def _resources(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    compute = {
        key: value
        for key, value in (("cpu", spec.hardware.cpu), ("memory", spec.hardware.memory))
        if value is not None
    }
    limits: dict[str, Any] = dict(compute)
    if spec.hardware.gpu is not None:
        limits[ctx.settings.gpu_resource_name] = str(spec.hardware.gpu.count)
    resources: dict[str, Any] = {}
    if compute:
        resources["requests"] = dict(compute)
    if limits:
        resources["limits"] = limits
    return resources


def _http_probe(path: str, period: int, failures: int, tls: bool, timeout: int = 5) -> dict[str, Any]:
    # No scheme without TLS: HTTP is the default, and a changed template would roll every model's pods.
    get: dict[str, Any] = {"path": path, "port": "http", **({"scheme": "HTTPS"} if tls else {})}
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _mounts(spec: InferenceModelSpec, ctx: BuildContext, models_read_only: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "models", "mountPath": MODELS_DIR, "readOnly": models_read_only},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if uses_node_cache(spec, ctx):
        mounts.append({"name": "node-cache", "mountPath": NODE_CACHE_DIR, "readOnly": models_read_only})
    claim = pvc_claim(spec.model.uri)
    if claim:
        mounts.append({"name": "artifact-pvc", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    if spec.model.image_volume is not None:
        mounts.append({"name": "model-image", "mountPath": MODEL_IMAGE_DIR, "readOnly": True})
    return mounts


def image_reference(uri: str) -> str:
    """oci://<registry>/<repository>@sha256:<digest> as the kubelet names an image."""
    return uri.removeprefix("oci://")


def config_digests(data: dict[str, str]) -> str:
    """`key=<sha256>,…` of the ConfigMap's data as rendered for this revision: the fetch step and the server
    wait until their mounted copy matches (a new pod can be handed the previous revision's copy a while)."""
    return ",".join(f"{key}={hashlib.sha256(data[key].encode()).hexdigest()}" for key in sorted(data))


def _env(spec: InferenceModelSpec, ctx: BuildContext, digests: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        {"name": "INFERGATE_MODEL", "value": ctx.name},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "INFERGATE_CONFIG_DIGESTS", "value": digests},
    ]
    if ctx.settings.node_cache or spec.model.image_volume is not None:
        # The fetch record is this pod's, not the shared entry's (nor can it go beside a read-only image).
        env.append({"name": "INFERGATE_FETCH_RECORD_DIR", "value": MODELS_DIR})
    return env


def uses_node_cache(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    return bool(ctx.settings.node_cache) and node_cache_key(spec) is not None


def _fetch_env(spec: InferenceModelSpec, ctx: BuildContext, digests: str) -> list[dict[str, Any]]:
    env = _env(spec, ctx, digests)
    if uses_node_cache(spec, ctx):
        env.append({"name": "INFERGATE_NODE_CACHE", "value": NODE_CACHE_DIR})
        if ctx.settings.node_cache_max_bytes:
            limit = str(ctx.settings.node_cache_max_bytes)
            env.append({"name": "INFERGATE_NODE_CACHE_MAX_BYTES", "value": limit})
    if fetch_pulls_with_secret(spec):
        env.append({"name": "INFERGATE_REGISTRY_AUTH_FILE", "value": REGISTRY_AUTH_FILE})
    if ctx.settings.oci_plain_http_registries:
        plain = ",".join(ctx.settings.oci_plain_http_registries)
        env.append({"name": "INFERGATE_OCI_PLAIN_HTTP", "value": plain})
    return env


def _fetch_container(spec: InferenceModelSpec, ctx: BuildContext, digests: str) -> dict[str, Any]:
    mounts = _mounts(spec, ctx, models_read_only=False)
    if fetch_pulls_with_secret(spec):
        # The registry's credentials reach the fetch step only; the server never sees them.
        mounts.append({"name": "registry-auth", "mountPath": REGISTRY_AUTH_DIR, "readOnly": True})
    return {
        "name": FETCH_CONTAINER,
        "image": ctx.image,
        "imagePullPolicy": ctx.settings.image_pull_policy,
        "command": ["infergate-server", "fetch", "--config", CONFIG_PATH, "--pvc-root", PVC_ROOT],
        "env": _fetch_env(spec, ctx, digests),
        # The fetch's stderr becomes the termination message: status.py classifies it from there.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }


def _server_container(spec: InferenceModelSpec, ctx: BuildContext, digests: str) -> dict[str, Any]:
    ports = [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    if spec.runtime.backend == "vllm":
        ports.append({"name": "openai", "containerPort": ctx.settings.vllm_openai_port, "protocol": "TCP"})
    mounts = _mounts(spec, ctx, models_read_only=True)
    if spec.runtime.backend in LLM_BACKENDS:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if spec.tenancy is not None:
        mounts.append({"name": "tenant-keys", "mountPath": TENANT_KEYS_DIR, "readOnly": True})
    if spec.tls is not None:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    tls = spec.tls is not None
    startup_failures = -(-ctx.settings.startup_timeout_seconds // STARTUP_PROBE_PERIOD_SECONDS)
    container: dict[str, Any] = {
        "name": SERVER_CONTAINER,
        "image": ctx.image,
        "imagePullPolicy": ctx.settings.image_pull_policy,
        "command": ["infergate-server", "serve", "--config", CONFIG_PATH],
        "ports": ports,
        "env": _env(spec, ctx, digests),
        "volumeMounts": mounts,
        # /healthz never touches the model; the startup probe only holds liveness off during the load.
        "startupProbe": _http_probe("/healthz", STARTUP_PROBE_PERIOD_SECONDS, startup_failures, tls),
        "livenessProbe": _http_probe("/healthz", PROBE_PERIOD_SECONDS, 3, tls),
        "readinessProbe": _http_probe(
            "/readyz", READINESS_PROBE_PERIOD_SECONDS, 2, tls, timeout=READINESS_PROBE_TIMEOUT_SECONDS
        ),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
    }
    resources = _resources(spec, ctx)
    if resources:
        container["resources"] = resources
    return container


def _volumes(spec: InferenceModelSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": ctx.config_map_name}},
        {"name": "models", "emptyDir": {"sizeLimit": ctx.settings.model_cache_size_limit}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    claim = pvc_claim(spec.model.uri)
    if claim:
        volumes.append(
            {"name": "artifact-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    if uses_node_cache(spec, ctx):
        volumes.append(node_cache_volume(ctx.settings.node_cache))
    if spec.model.image_volume is not None:
        image = {"reference": image_reference(spec.model.uri), "pullPolicy": "IfNotPresent"}
        volumes.append({"name": "model-image", "image": image})
    if fetch_pulls_with_secret(spec):
        volumes.append(
            {
                "name": "registry-auth",
                "secret": {
                    "secretName": spec.model.pull_secret_name,
                    "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}],
                    "defaultMode": 0o440,
                },
            }
        )
    if spec.runtime.backend in LLM_BACKENDS:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}})
    if spec.tls is not None:
        volumes.append({"name": "tls", "secret": {"secretName": spec.tls.secret_name, "defaultMode": 0o440}})
    if spec.tenancy is not None:
        # Owner and group read only: the server runs as RUN_AS with fsGroup RUN_AS.
        volumes.append(
            {"name": "tenant-keys", "secret": {"secretName": spec.tenancy.secret_name, "defaultMode": 0o440}}
        )
    return volumes


def fetch_pulls_with_secret(spec: InferenceModelSpec) -> bool:
    """The fetch step pulls the oci:// artifact with model.pullSecretName; an image volume is the kubelet's
    to pull, with the same Secret as an imagePullSecret."""
    return spec.model.pull_secret_name is not None and spec.model.image_volume is None


def node_cache_volume(setting: str) -> dict[str, Any]:
    """settings.node_cache as a volume: `hostPath:<dir>` (the directory must exist, writable by RUN_AS) or
    `pvc:<claim>` (a node-local claim, e.g. a `local` PersistentVolume; allowed under restricted security)."""
    kind, _, where = setting.partition(":")
    if kind == "pvc":
        return {"name": "node-cache", "persistentVolumeClaim": {"claimName": where}}
    return {"name": "node-cache", "hostPath": {"path": where, "type": "Directory"}}


def _placement(spec: InferenceModelSpec, ctx: BuildContext, hash_label: str) -> dict[str, Any]:
    settings = ctx.settings
    placement: dict[str, Any] = {}
    node_selector = dict(spec.scheduling.node_selector)
    tolerations = [
        t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in spec.scheduling.tolerations
    ]
    gpu = spec.hardware.gpu
    if gpu is not None:
        if gpu.product:
            node_selector[settings.gpu_product_label] = gpu.product
        tolerations.insert(
            0,
            {
                "key": settings.gpu_taint_key,
                "operator": "Equal",
                "value": settings.gpu_taint_value,
                "effect": "NoSchedule",
            },
        )
    if node_selector:
        placement["nodeSelector"] = node_selector
    if tolerations:
        placement["tolerations"] = tolerations
    topology_key = TOPOLOGY_KEYS.get(spec.scheduling.spread_across)
    if topology_key is not None:
        # ScheduleAnyway: a DoNotSchedule constraint skips nodes without the key, which would strand
        # every replica on clusters whose nodes carry no zone label.
        placement["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": topology_key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": ctx.selector_labels},
                "matchLabelKeys": [hash_label],
            }
        ]
        placement["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": TOPOLOGY_KEYS["node"],
                            "labelSelector": {"matchLabels": ctx.selector_labels},
                        },
                    }
                ]
            }
        }
    return placement


def build_pod_template(
    spec: InferenceModelSpec, ctx: BuildContext, hash_label: str = "pod-template-hash"
) -> dict[str, Any]:
    """The pod template shared by every workload kind; `hash_label` is the label the workload
    controller stamps per revision (Argo Rollouts: rollouts-pod-template-hash), spread per revision."""
    config = build_configmap(spec, ctx)["data"]
    digests = config_digests(config)
    pod: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(ctx.settings.service_account_name),
        "securityContext": copy.deepcopy(POD_SECURITY),
        "initContainers": [_fetch_container(spec, ctx, digests)],
        "containers": [_server_container(spec, ctx, digests)],
        "volumes": _volumes(spec, ctx),
        "terminationGracePeriodSeconds": termination_grace_seconds(ctx),
        **_placement(spec, ctx, hash_label),
    }
    if ctx.settings.service_account_name:
        pod["serviceAccountName"] = ctx.settings.service_account_name
    if spec.scheduling.priority_class_name:
        pod["priorityClassName"] = spec.scheduling.priority_class_name
    if spec.model.image_volume is not None and spec.model.pull_secret_name:
        pod["imagePullSecrets"] = [{"name": spec.model.pull_secret_name}]
    return {
        "metadata": {
            "labels": dict(ctx.labels),
            "annotations": {
                ANNOTATION_SPEC_HASH: ctx.spec_hash,
                ANNOTATION_CONFIG_HASH: stable_hash(config),  # an edit rolls the pods
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(CONTAINER_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod,
    }


def template_revision(template: dict[str, Any]) -> str:
    """status.revision: a hash of the rendered pod template."""
    return stable_hash(template, length=10)


def owns_scale(spec: InferenceModelSpec) -> bool:
    """Whether the workload carries `replicas`; with an HPA it is left out so the HPA owns it under SSA."""
    return spec.autoscaling is None


def build_deployment(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    workload: dict[str, Any] = {
        "selector": {"matchLabels": ctx.selector_labels},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": ctx.settings.progress_deadline_seconds,
        "revisionHistoryLimit": 5,
        "template": build_pod_template(spec, ctx),
    }
    if owns_scale(spec):
        workload = {"replicas": spec.replicas, **workload}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ctx.metadata(),
        "spec": workload,
    }
