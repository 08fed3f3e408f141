"""ConfigMap `<name>-config`: the server's `server.yaml` (ServerConfig) with the golden set inside."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from infergate_operator.context import BuildContext, spec_dump
from infergate_operator.spec import GoldenCase, InferenceModelSpec
from infergate_operator.spec_base import PINNED_OCI_RE, parse_quantity

CONFIG_KEY = "server.yaml"
CONFIG_DIR = "/etc/infergate"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
MODELS_DIR = "/models"
TLS_DIR = "/etc/infergate-tls"  # spec.tls.secretName, read-only, server container only
TENANT_KEYS_DIR = "/etc/infergate-tenants"  # spec.tenancy.secretName, read-only, server container only
TOKENIZER_DIR = f"{MODELS_DIR}/tokenizer"  # beside the model, in the same emptyDir the fetch step fills
CONTAINER_PORT = 8080
# A readiness probe that reaches a server mid-startup waits this long for the golden verdict (the server's
# readinessHoldSeconds) instead of failing and standing for a whole probe period; the probe's timeout
# must be longer.
READINESS_HOLD_SECONDS = 3.0
READINESS_PROBE_TIMEOUT_SECONDS = 5
MODEL_IMAGE_DIR = "/model-image"  # spec.model.imageVolume: the image's root, read-only, fetch and server
NODE_CACHE_DIR = "/var/cache/infergate"  # settings.node_cache: fetch read-write, server read-only
DRIFT_BASELINE_KEY = "drift-baseline.json"  # in this ConfigMap, so mounted beside server.yaml


def artifact_basename(uri: str) -> str:
    """The file or directory name the fetch step gives the artifact under MODELS_DIR.

    hf://org/repo@commit → repo; oci://registry/repo/name@sha256:… → name; otherwise the last path segment.
    """
    parts = urlsplit(uri)
    path = (parts.netloc + parts.path).split("@", 1)[0].rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if parts.scheme == "oci":
        last = last.split(":", 1)[0]
    return last or "model"


def model_path(uri: str) -> str:
    return f"{MODELS_DIR}/{artifact_basename(uri)}"


def node_cache_key(spec: InferenceModelSpec) -> str | None:
    """The node-cache entry of the model's pin: `oci-<manifest digest>` or `sha256-<sha256>`; None for an
    artifact pinned otherwise (hf://…@commit without a sha256), which is not cached, and for an image volume
    (the node's runtime keeps the image once per node)."""
    if spec.model.image_volume is not None:
        return None
    match = re.match(PINNED_OCI_RE, spec.model.uri)
    if match:
        return "oci-" + spec.model.uri.rsplit("@sha256:", 1)[1]
    if spec.model.sha256 is not None:
        return "sha256-" + spec.model.sha256
    return None


def artifact_path(spec: InferenceModelSpec, ctx: BuildContext) -> str:
    """Where the fetch step puts the verified artifact and the server loads it: the node cache's entry for
    its pin when the operator has a node cache, else the pod's own emptyDir; an image volume's file is where
    the image puts it."""
    if spec.model.image_volume is not None:
        return f"{MODEL_IMAGE_DIR}/{spec.model.image_volume.path}"
    key = node_cache_key(spec)
    if ctx.settings.node_cache and key is not None:
        return f"{NODE_CACHE_DIR}/entries/{key}/{artifact_basename(spec.model.uri)}"
    return model_path(spec.model.uri)


def tokenizer_config(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """runtime.tokenizer as the server reads it: where the fetch step puts the file (its own artifact) or
    where it sits inside the model's directory."""
    tokenizer = spec.runtime.tokenizer
    assert tokenizer is not None
    config: dict[str, Any] = {"inputName": tokenizer.input_name, "maxLength": tokenizer.max_length}
    if tokenizer.uri is not None:
        config["path"] = f"{TOKENIZER_DIR}/{artifact_basename(tokenizer.uri)}"
        config["uri"] = tokenizer.uri
        if tokenizer.sha256 is not None:
            config["sha256"] = tokenizer.sha256
    else:
        config["path"] = f"{artifact_path(spec, ctx)}/{tokenizer.path}"
    return config


def cpu_count(quantity: str) -> int:
    """Whole CPUs in a Kubernetes CPU quantity ("2", "1.5", "500m"), rounded up, at least 1."""
    return max(1, math.ceil(parse_quantity(quantity) - 1e-9))


def golden_cases(spec: InferenceModelSpec, ctx: BuildContext) -> list[GoldenCase]:
    """Inline cases, else those the caller read from golden.configMapRef into ctx."""
    if spec.golden is None:
        return []
    if spec.golden.cases is not None:
        return list(spec.golden.cases)
    return list(ctx.golden_cases or ())


def server_config(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """The ServerConfig document: it mirrors the CR (camelCase), plus where the artifact was put."""
    dumped = spec_dump(spec)
    model: dict[str, Any] = {"name": ctx.name}
    for key in ("version", "uri"):
        if key in dumped["model"]:
            model[key] = dumped["model"][key]
    model["path"] = artifact_path(spec, ctx)
    for key in ("format", "sha256", "signature", "outputs"):
        if key in dumped["model"]:
            model[key] = dumped["model"][key]
    if spec.model.image_volume is not None:
        model["imageVolume"] = True
    runtime = dumped["runtime"]
    if spec.runtime.tokenizer is not None:
        runtime["tokenizer"] = tokenizer_config(spec, ctx)
    if not spec.runtime.threads.intra_op and spec.hardware.cpu:
        # The runtime's default counts the node's cores, not the container's CPU: oversubscribed pods.
        runtime["threads"]["intraOp"] = cpu_count(spec.hardware.cpu)
    cases = [
        case.model_dump(mode="json", by_alias=True, exclude_none=True) for case in golden_cases(spec, ctx)
    ]
    golden: dict[str, Any] = {"cases": cases}
    if spec.golden is None:
        golden["required"] = False  # no golden set: ready once loaded (with one, never without passing)
    else:
        golden["periodSeconds"] = spec.golden.period_seconds
    config: dict[str, Any] = {
        "model": model,
        "runtime": runtime,
        "golden": golden,
        "server": {
            "host": "0.0.0.0",
            "port": CONTAINER_PORT,
            "shutdownDelaySeconds": ctx.settings.shutdown_delay_seconds,
            "drainTimeoutSeconds": ctx.settings.drain_timeout_seconds,
            "readinessHoldSeconds": READINESS_HOLD_SECONDS,
        },
    }
    if spec.tls is not None:
        config["server"]["tls"] = {"certFile": f"{TLS_DIR}/tls.crt", "keyFile": f"{TLS_DIR}/tls.key"}
    if "tenancy" in dumped:
        tenancy = dict(dumped["tenancy"])
        del tenancy["secretName"]  # the builders mount it at TENANT_KEYS_DIR
        config["tenancy"] = {"keysDir": TENANT_KEYS_DIR, **tenancy}
    drift = spec.monitoring.input_drift
    if drift is not None:
        config["drift"] = {"windowSeconds": drift.window_seconds, "minValues": drift.min_values}
        if drift.baseline_config_map_ref is not None:
            config["drift"]["baselinePath"] = f"{CONFIG_DIR}/{DRIFT_BASELINE_KEY}"
    shadow = spec.rollout.shadow
    if shadow is not None:
        service = shadow.target or f"{ctx.name}-canary"  # builders/analysis.py canary_service_name
        config["shadow"] = {
            "targetUrl": f"http://{service}.{ctx.namespace}.svc:{spec.service.port}",
            "model": shadow.target or ctx.name,
            "samplePercent": shadow.sample_percent,
            "maxRequestsPerSecond": shadow.max_requests_per_second,
            "atol": shadow.atol,
            "rtol": shadow.rtol,
        }
    if ctx.debug_perturb_after_calls is not None:
        config["debug"] = {"perturbOutputsAfterCalls": ctx.debug_perturb_after_calls}
    return config


def render_server_yaml(spec: InferenceModelSpec, ctx: BuildContext) -> str:
    # libyaml's emitter when PyYAML has it: the same text, about 4x less CPU per reconcile.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(server_config(spec, ctx), Dumper=dumper, sort_keys=False, allow_unicode=True)


def _with_baseline(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    drift = spec.monitoring.input_drift
    return drift is not None and drift.baseline_config_map_ref is not None and ctx.drift_baseline is not None


def build_configmap(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ctx.metadata(ctx.config_map_name),
        "data": {
            CONFIG_KEY: render_server_yaml(spec, ctx),
            **({DRIFT_BASELINE_KEY: ctx.drift_baseline} if _with_baseline(spec, ctx) else {}),
        },
    }
