"""Fluent InferenceModel fixtures (kueue style): make_model("x").gpus(2).autoscaling(1, 4).spec()."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from infergate_operator.context import BuildContext, make_context
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import GoldenCase, InferenceModelSpec

FIXTURES = Path(__file__).parent / "fixtures"
SHA = "9f2c6e0d1c3b5a79f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
UID = "6f1c1f3e-0000-4000-8000-000000000001"


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text())
    return data


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def tensor(shape: list[int], data: list[Any], datatype: str = "FP32") -> dict[str, Any]:
    return {"shape": shape, "datatype": datatype, "data": data}


class ModelWrapper:
    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self.raw: dict[str, Any] = {
            "model": {"uri": "s3://models/m/model.onnx", "format": "onnx", "sha256": SHA},
            "runtime": {"backend": "onnxruntime"},
        }

    def patch(self, patch: dict[str, Any]) -> ModelWrapper:
        self.raw = merge_patch(self.raw, patch)
        return self

    def uri(self, uri: str, sha256: str | None = SHA) -> ModelWrapper:
        return self.patch({"model": {"uri": uri, "sha256": sha256}})

    def backend(self, backend: str, fmt: str) -> ModelWrapper:
        return self.patch({"runtime": {"backend": backend}, "model": {"format": fmt}})

    def llm(self) -> ModelWrapper:
        return self.uri("hf://org/tiny-llm@" + "0" * 40, sha256=None).backend("vllm", "hf-causal-lm")

    def gpus(self, count: int, product: str | None = "NVIDIA-A10G") -> ModelWrapper:
        return self.patch({"hardware": {"gpu": {"count": count, "product": product}}})

    def cpu(self, cpu: str | int) -> ModelWrapper:
        return self.patch({"hardware": {"cpu": cpu}})

    def memory(self, memory: str) -> ModelWrapper:
        return self.patch({"hardware": {"memory": memory}})

    def replicas(self, count: int) -> ModelWrapper:
        return self.patch({"replicas": count})

    def autoscaling(self, min_replicas: int, max_replicas: int, **extra: Any) -> ModelWrapper:
        return self.patch(
            {"autoscaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas, **extra}}
        )

    def spread(self, across: str) -> ModelWrapper:
        return self.patch({"scheduling": {"spreadAcross": across}})

    def golden_tensor(self, name: str = "positive", value: float = 3.4) -> ModelWrapper:
        cases = list((self.raw.get("golden") or {}).get("cases") or [])
        cases.append(
            {
                "name": name,
                "inputs": {"input_ids": tensor([1, 2], [101, 102], "INT64")},
                "expected": {"logits": tensor([1, 2], [-3.1, value])},
                "atol": 1e-3,
            }
        )
        return self.patch({"golden": {"cases": cases}})

    def golden_llm(self, name: str = "capital", text: str = " Paris") -> ModelWrapper:
        case = {"name": name, "prompt": "The capital of France is", "maxTokens": 4, "expectedText": text}
        return self.patch({"golden": {"cases": [case]}})

    def golden_ref(self, config_map: str, key: str = "golden.yaml") -> ModelWrapper:
        return self.patch({"golden": {"configMapRef": {"name": config_map, "key": key}}})

    def canary(self) -> ModelWrapper:
        return self.patch({"rollout": {"strategy": "Canary", "canary": {"steps": [{"setWeight": 20}]}}})

    def image(self, image: str) -> ModelWrapper:
        return self.patch({"image": image})

    def spec(self) -> InferenceModelSpec:
        return InferenceModelSpec.model_validate(self.raw, by_alias=True)

    def obj(self) -> dict[str, Any]:
        return {
            "apiVersion": "serving.infergate.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": UID, "generation": 1},
            "spec": copy.deepcopy(self.raw),
        }

    def ctx(
        self,
        settings: OperatorSettings | None = None,
        golden_cases: tuple[GoldenCase, ...] | None = None,
        prometheus_operator: bool = False,
        keda: bool = False,
    ) -> BuildContext:
        meta = self.obj()["metadata"]
        return make_context(
            meta, self.spec(), settings or OperatorSettings(), golden_cases, prometheus_operator, keda=keda
        )


def make_model(name: str = "m", namespace: str = "default") -> ModelWrapper:
    return ModelWrapper(name, namespace)
