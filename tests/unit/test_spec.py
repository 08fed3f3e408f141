"""The typed spec: DESIGN §1's names and shapes, round trips, descriptions everywhere."""

from __future__ import annotations

from typing import Any

import pytest
from infergate_operator.context import spec_dump
from infergate_operator.spec import InferenceModelSpec, InferenceModelStatus

from tests.unit.igm import load_fixture

# Paths DESIGN §1 names: tests outside the repo rely on them.
DESIGN_PATHS = [
    "model.uri", "model.format", "model.sha256", "model.signature.bundleUri", "model.signature.identity",
    "model.signature.issuer", "model.version", "runtime.backend", "runtime.precision",
    "runtime.batching.maxBatchSize", "runtime.batching.maxQueueDelayMs", "runtime.maxQueueDepth",
    "runtime.requestTimeoutSeconds", "runtime.args", "hardware.gpu.count", "hardware.gpu.product",
    "hardware.cpu", "hardware.memory", "scheduling.spreadAcross", "scheduling.nodeSelector",
    "scheduling.tolerations",
    "scheduling.priorityClassName", "replicas", "autoscaling.minReplicas", "autoscaling.maxReplicas",
    "autoscaling.targetQueueDepth", "autoscaling.targetCPUUtilization",
    "autoscaling.scaleDownStabilizationSeconds",
    "golden.cases", "golden.configMapRef", "golden.periodSeconds", "rollout.strategy", "rollout.canary.steps",
    "rollout.canary.analysis.maxP95LatencySeconds", "rollout.canary.analysis.maxErrorRate",
    "rollout.canary.analysis.interval", "rollout.canary.analysis.failureLimit", "service.port",
]  # fmt: skip
STATUS_PATHS = [
    "phase", "observedGeneration", "conditions", "replicas", "readyReplicas", "revision", "stableRevision",
    "canaryWeight", "endpoint", "golden.passed", "golden.failed", "golden.maxAbsError", "golden.checkedAt",
    "provenance.sha256", "provenance.image", "provenance.backend", "provenance.hardware", "message",
]  # fmt: skip


def _resolve(schema: dict[str, Any], path: str) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    node = schema
    for part in path.split("."):
        while "$ref" in node or "anyOf" in node:
            if "$ref" in node:
                node = defs[node["$ref"].rsplit("/", 1)[-1]]
            else:
                node = next(o for o in node["anyOf"] if o.get("type") != "null")
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("path", DESIGN_PATHS)
def test_design_spec_names_exist(path: str) -> None:
    _resolve(InferenceModelSpec.model_json_schema(by_alias=True), path)


@pytest.mark.parametrize("path", STATUS_PATHS)
def test_design_status_names_exist(path: str) -> None:
    _resolve(InferenceModelStatus.model_json_schema(by_alias=True), path)


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    if small == big or str(small) == str(big):
        return True
    try:  # PyYAML reads YAML 1.1: `1e-3` stays a string there, the API server's YAML 1.2 reads a number
        return float(small) == float(big)
    except (TypeError, ValueError):
        return False


@pytest.mark.parametrize("name", ["sentiment.yaml", "llm.yaml"])
def test_fixtures_round_trip(name: str) -> None:
    raw = load_fixture(name)["spec"]
    spec = InferenceModelSpec.model_validate(raw, by_alias=True)
    dumped = spec_dump(spec)
    assert _subset(raw, dumped)
    assert InferenceModelSpec.model_validate(dumped, by_alias=True) == spec


def test_design_example_fields() -> None:
    spec = InferenceModelSpec.model_validate(load_fixture("sentiment.yaml")["spec"], by_alias=True)
    assert spec.hardware.gpu is not None
    assert spec.hardware.gpu.product == "NVIDIA-A10G"
    assert spec.autoscaling is not None
    assert spec.autoscaling.target_cpu_utilization == 70
    assert spec.rollout.canary is not None
    assert spec.rollout.canary.steps[1].pause is not None
    assert spec.golden is not None
    assert spec.golden.cases is not None
    assert spec.golden.cases[0].inputs is not None
    assert spec.golden.cases[0].inputs["input_ids"].shape == [
        1,
        8,
    ]


def test_quantities_accept_integers() -> None:
    raw = load_fixture("llm.yaml")["spec"] | {"hardware": {"cpu": 4, "memory": "8Gi"}}
    assert InferenceModelSpec.model_validate(raw, by_alias=True).hardware.cpu == "4"


def test_spec_is_immutable() -> None:
    spec = InferenceModelSpec.model_validate(load_fixture("llm.yaml")["spec"], by_alias=True)
    with pytest.raises(ValueError, match="frozen"):
        spec.replicas = 3  # type: ignore[misc]
