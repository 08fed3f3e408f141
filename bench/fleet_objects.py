"""The fleet the scale benchmark builds (pure: index -> object, no I/O): fake GPU nodes and a model mix.

Nodes: kwok-managed v1/Node objects like tools/controlplane/nodes.yaml (annotation kwok.x-k8s.io/node=fake,
the nvidia.com/gpu taint, GPU-feature-discovery labels), spread over 4 zones and 3 GPU products, 8 GPUs each.

Models, deterministic per index: ~70 % RollingUpdate ONNX, ~20 % vLLM on one GPU, ~10 % Canary (ONNX);
golden sets inline or by ConfigMap (one ConfigMap of sets per namespace); a fraction with replicas (kwok
runs their pods, the real scheduler places them by GPU product and zone), of which most autoscale; the
rest at `replicas: 0` (an HPA always keeps one replica, so autoscaled models are among those with pods).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import yaml

GROUP, VERSION, PLURAL = "serving.infergate.io", "v1alpha1", "inferencemodels"
ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")
PRODUCTS = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-A10G", "NVIDIA-L4")
GPUS_PER_NODE = 8
GOLDEN_CONFIGMAP = "golden-sets"
TENSOR_CASES = [
    {
        "name": "ones",
        "inputs": {"x": {"shape": [1, 4], "datatype": "FP32", "data": [1.0, 1.0, 1.0, 1.0]}},
        "expected": {"y": {"shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}},
        "atol": 1e-3,
    }
]
LLM_CASES = [
    {"name": "capital", "prompt": "The capital of France is", "maxTokens": 4, "expectedText": " Paris"}
]
CANARY_STEPS = [
    {"setWeight": 20},
    {"pause": {"duration": "2m"}},
    {"setWeight": 50},
    {"pause": {"duration": "2m"}},
]
CANARY_GATES = {"interval": "1m", "failureLimit": 2, "maxP95LatencySeconds": 1.5, "maxErrorRate": 0.01}


def node(i: int) -> dict[str, Any]:
    """Fake GPU node i: product and zone cycle independently, so every product is in every zone."""
    name = f"fleet-gpu-{i:04d}"
    product = PRODUCTS[i % len(PRODUCTS)]
    zone = ZONES[(i // len(PRODUCTS)) % len(ZONES)]
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(GPUS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": zone,
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(GPUS_PER_NODE),
            },
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {"allocatable": resources, "capacity": resources},
    }


def golden_configmap(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": GOLDEN_CONFIGMAP, "namespace": namespace},
        "data": {"tensor.yaml": yaml.safe_dump(TENSOR_CASES), "llm.yaml": yaml.safe_dump(LLM_CASES)},
    }


@dataclass(frozen=True)
class Mix:
    models: int
    namespaces: int = 50
    pods_fraction: float = 0.3
    autoscaling_fraction: float = 0.25
    seed: int = 16

    def __post_init__(self) -> None:
        if not 0 <= self.autoscaling_fraction <= self.pods_fraction <= 1:
            raise ValueError(
                "--autoscaling-fraction must be <= --pods-fraction (an HPA keeps at least one replica)"
            )
        if self.models < 1 or self.namespaces < 1:
            raise ValueError("--models and --namespaces must be at least 1")

    def namespace(self, i: int) -> str:
        return f"team-{i % self.namespaces:02d}"

    def name(self, i: int) -> str:
        return f"m{i:05d}"

    def with_pods(self, i: int) -> bool:
        return random.Random(self.seed * 1_000_003 + i).random() < self.pods_fraction

    def model(self, i: int) -> dict[str, Any]:
        """InferenceModel i of the fleet."""
        rng = random.Random(self.seed * 1_000_003 + i)
        pods = rng.random() < self.pods_fraction
        autoscaled = pods and rng.random() < self.autoscaling_fraction / max(self.pods_fraction, 1e-9)
        kind = rng.random()
        by_configmap = rng.random() < 0.4
        spec = _vllm(rng, by_configmap) if kind < 0.2 else _onnx(rng, by_configmap, canary=kind >= 0.9)
        if autoscaled:
            spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": rng.choice((2, 4)), "targetQueueDepth": 8}
        else:
            spec["replicas"] = rng.choice((1, 1, 2)) if pods else 0
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceModel",
            "metadata": {"name": self.name(i), "namespace": self.namespace(i)},
            "spec": spec,
        }


def _golden(by_configmap: bool, key: str, inline: list[dict[str, Any]]) -> dict[str, Any]:
    if by_configmap:
        return {"configMapRef": {"name": GOLDEN_CONFIGMAP, "key": key}, "periodSeconds": 60}
    return {"cases": inline, "periodSeconds": 60}


def _onnx(rng: random.Random, by_configmap: bool, canary: bool) -> dict[str, Any]:
    version = rng.randint(1, 9)
    spec: dict[str, Any] = {
        "model": {
            "uri": f"s3://models/team/{rng.randint(0, 999)}/{version}/model.onnx",
            "format": "onnx",
            "sha256": f"{rng.getrandbits(256):064x}",
            "version": str(version),
        },
        "runtime": {
            "backend": "onnxruntime",
            "precision": rng.choice(("fp32", "fp16")),
            "batching": {"maxBatchSize": 16, "maxQueueDelayMs": 5},
            "requestTimeoutSeconds": 30,
        },
        "hardware": {
            "gpu": {"count": 1, "product": rng.choice(PRODUCTS[1:])},
            "cpu": "2",
            "memory": "8Gi",
        },
        "golden": _golden(by_configmap, "tensor.yaml", TENSOR_CASES),
    }
    if canary:
        spec["rollout"] = {"strategy": "Canary", "canary": {"steps": CANARY_STEPS, "analysis": CANARY_GATES}}
    return spec


def _vllm(rng: random.Random, by_configmap: bool) -> dict[str, Any]:
    return {
        "model": {
            "uri": f"hf://org{rng.randint(0, 99)}/llm-{rng.randint(0, 999)}@{rng.getrandbits(160):040x}",
            "format": "hf-causal-lm",
            "version": "1",
        },
        "runtime": {
            "backend": "vllm",
            "precision": "bf16",
            "requestTimeoutSeconds": 60,
            "args": {"maxModelLen": 4096, "gpuMemoryUtilization": 0.9},
        },
        "hardware": {"gpu": {"count": 1, "product": rng.choice(PRODUCTS)}, "cpu": "8", "memory": "32Gi"},
        "golden": _golden(by_configmap, "llm.yaml", LLM_CASES),
    }
