"""Spec checks beyond the schema and CEL, and the one formatter for `spec.<field path>: message` errors.

Entry point: `check_spec(raw)` parses the CR's spec and runs every semantic rule; a non-empty
`errors` is reported as Degraded/InvalidSpec and no child is created.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from infergate_operator.builders.children import supported_strategies
from infergate_operator.spec import GoldenCase, InferenceModelSpec, TensorData
from infergate_operator.spec_base import parse_quantity

# Which artifact formats each backend loads.
BACKEND_FORMATS: dict[str, frozenset[str]] = {
    "onnxruntime": frozenset({"onnx"}),
    "tensorrt": frozenset({"tensorrt-engine", "onnx"}),
    "vllm": frozenset({"hf-causal-lm"}),
    "transformers": frozenset({"hf-transformers", "hf-causal-lm"}),
}
GPU_ONLY_BACKENDS = frozenset({"tensorrt"})
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_NUMERIC_TYPES = {"BOOL": bool, "BYTES": str}
# The spec travels in every watch event and list; larger golden sets belong in a ConfigMap (configMapRef).
MAX_INLINE_GOLDEN_BYTES = 64 * 1024
_CASES = TypeAdapter(list[GoldenCase])


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    text = str(err["msg"]).removeprefix("Value error, ")
    if text.startswith("Input should be"):
        text = "must be" + text.removeprefix("Input should be")
    elif text.startswith(("String should", "List should", "Dictionary should")):
        text = "must" + text.split("should", 1)[1]
    return text


def field_path(loc: Iterable[int | str], root: str = "spec") -> str:
    """('autoscaling', 'minReplicas') → spec.autoscaling.minReplicas; list indices as [i]."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def format_errors(exc: ValidationError, root: str = "spec") -> list[str]:
    """One `spec.<camelCase path>: message` line per pydantic error; cross-field rules name their field."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == "cross_field":
            loc.append(ctx["field"])
        lines.append(f"{field_path(loc, root)}: {_message(err)}")
    return lines


def _flat_len(data: list[Any]) -> int:
    return sum(_flat_len(item) if isinstance(item, list) else 1 for item in data)


def _flatten(data: list[Any]) -> Iterable[Any]:
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def tensor_errors(tensor: TensorData, path: str) -> list[str]:
    """Shape has no negative dimension, data holds product(shape) elements of the datatype's kind."""
    if any(dim < 0 for dim in tensor.shape):
        return [f"{path}.shape: dimensions must be ≥ 0 in a golden case"]
    expected = math.prod(tensor.shape)
    found = _flat_len(tensor.data)
    if found != expected:
        return [f"{path}.data: has {found} elements, shape {tensor.shape} needs {expected}"]
    kind = _NUMERIC_TYPES.get(tensor.datatype)
    for item in _flatten(tensor.data):
        if kind is str and not isinstance(item, str):
            return [f"{path}.data: BYTES elements must be strings"]
        if kind is bool and not isinstance(item, bool):
            return [f"{path}.data: BOOL elements must be true or false"]
        if kind is None and (isinstance(item, bool) or not isinstance(item, int | float)):
            return [f"{path}.data: {tensor.datatype} elements must be numbers"]
        if kind is None and tensor.datatype[0] in "IU" and not float(item).is_integer():
            return [f"{path}.data: {tensor.datatype} elements must be integers"]
    return []


def golden_errors(spec: InferenceModelSpec, cases: Iterable[GoldenCase], path: str) -> list[str]:
    """Per-case checks: unique names, tensor data sizes, and case kind vs the backend."""
    errors: list[str] = []
    seen: set[str] = set()
    llm = spec.runtime.backend == "vllm" or spec.model.format == "hf-causal-lm"
    for index, case in enumerate(cases):
        at = f"{path}[{index}]"
        if case.name in seen:
            errors.append(f"{at}.name: duplicate case name {case.name!r}")
        seen.add(case.name)
        if case.prompt is not None and not llm:
            errors.append(f"{at}.prompt: LLM cases need backend vllm or model format hf-causal-lm")
        if case.inputs is not None and spec.runtime.backend == "vllm":
            errors.append(f"{at}.inputs: backend vllm runs LLM cases (prompt), not tensor cases")
        for field, tensors in (("inputs", case.inputs or {}), ("expected", case.expected or {})):
            for name, tensor in tensors.items():
                errors.extend(tensor_errors(tensor, f"{at}.{field}.{name}"))
    return errors


def _hardware_errors(spec: InferenceModelSpec) -> list[str]:
    errors = []
    for field, value, least, unit in (
        ("cpu", spec.hardware.cpu, 0.001, "1m"),
        ("memory", spec.hardware.memory, 2.0**20, "1Mi"),
    ):
        if value is None:
            continue
        try:
            amount = parse_quantity(value)
        except ValueError:
            errors.append(f"spec.hardware.{field}: {value!r} is not a Kubernetes quantity")
            continue
        if amount < least:
            errors.append(f"spec.hardware.{field}: {value!r} is below {unit}")
    gpu = spec.hardware.gpu
    if gpu is not None and gpu.product is not None and not LABEL_VALUE_RE.match(gpu.product):
        errors.append(
            f"spec.hardware.gpu.product: {gpu.product!r} is not a valid label value (e.g. NVIDIA-A10G)"
        )
    if gpu is None and spec.runtime.backend in GPU_ONLY_BACKENDS:
        errors.append(f"spec.hardware.gpu: required for backend {spec.runtime.backend}")
    return errors


def _scheduling_errors(spec: InferenceModelSpec, gpu_product_label: str) -> list[str]:
    errors = []
    for key, value in spec.scheduling.node_selector.items():
        name = key.rsplit("/", 1)[-1]
        prefix = key[: -len(name) - 1] if "/" in key else ""
        if not LABEL_NAME_RE.match(name) or (prefix and not DNS_SUBDOMAIN_RE.match(prefix)):
            errors.append(f"spec.scheduling.nodeSelector: {key!r} is not a valid label key")
        elif not LABEL_VALUE_RE.match(value):
            errors.append(f"spec.scheduling.nodeSelector.{key}: {value!r} is not a valid label value")
    gpu = spec.hardware.gpu
    chosen = spec.scheduling.node_selector.get(gpu_product_label)
    if gpu is not None and gpu.product and chosen is not None and chosen != gpu.product:
        errors.append(
            f"spec.scheduling.nodeSelector.{gpu_product_label}: {chosen!r} contradicts "
            f"spec.hardware.gpu.product {gpu.product!r}"
        )
    for index, tol in enumerate(spec.scheduling.tolerations):
        at = f"spec.scheduling.tolerations[{index}]"
        if tol.operator == "Exists" and tol.value:
            errors.append(f"{at}.value: must be empty with operator Exists")
        if not tol.key and tol.operator != "Exists":
            errors.append(f"{at}.key: required unless operator is Exists")
        if tol.toleration_seconds is not None and tol.effect != "NoExecute":
            errors.append(f"{at}.tolerationSeconds: only with effect NoExecute")
    return errors


def semantic_errors(
    spec: InferenceModelSpec, golden_cases: Iterable[GoldenCase] | None = None, gpu_product_label: str = ""
) -> list[str]:
    """Rules the schema and CEL cannot express. `golden_cases`: cases read from golden.configMapRef."""
    errors: list[str] = []
    backend, fmt = spec.runtime.backend, spec.model.format
    if fmt not in BACKEND_FORMATS[backend]:
        allowed = ", ".join(sorted(BACKEND_FORMATS[backend]))
        errors.append(f"spec.model.format: backend {backend} loads {allowed}, not {fmt}")
    uri = spec.model.uri
    scheme, _, rest = uri.partition("://")
    if scheme in ("pvc", "s3") and "/" not in rest.strip("/"):
        errors.append(
            f"spec.model.uri: {scheme}:// needs <{'claim' if scheme == 'pvc' else 'bucket'}>/<path>"
        )
    if scheme == "hf" and rest.split("@", 1)[0].count("/") != 1:
        errors.append("spec.model.uri: hf:// needs <org>/<repo>[@<commit>]")
    if spec.image is not None and (not spec.image.strip() or any(ch.isspace() for ch in spec.image)):
        errors.append("spec.image: must be an image reference without spaces")
    errors.extend(_hardware_errors(spec))
    errors.extend(_scheduling_errors(spec, gpu_product_label or "nvidia.com/gpu.product"))
    if spec.rollout.strategy not in supported_strategies():
        errors.append(
            f"spec.rollout.strategy: {spec.rollout.strategy} is not supported by this operator version"
        )
    if spec.golden is not None:
        if spec.golden.cases is not None:
            errors.extend(golden_errors(spec, spec.golden.cases, "spec.golden.cases"))
            size = sum(
                len(case.model_dump_json(by_alias=True, exclude_none=True)) for case in spec.golden.cases
            )
            if size > MAX_INLINE_GOLDEN_BYTES:
                errors.append(
                    f"spec.golden.cases: {size // 1024} KiB inline; sets over "
                    f"{MAX_INLINE_GOLDEN_BYTES // 1024} KiB go in a ConfigMap (golden.configMapRef)"
                )
        elif golden_cases is not None:
            errors.extend(golden_errors(spec, golden_cases, "spec.golden.configMapRef"))
    return errors


def parse_golden_cases(
    text: str, path: str = "spec.golden.configMapRef"
) -> tuple[tuple[GoldenCase, ...], list[str]]:
    """Cases from a golden ConfigMap key (a YAML list shaped like spec.golden.cases), or errors naming it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return (), [f"{path}: not valid YAML: {exc}"]
    try:
        return tuple(_CASES.validate_python(data, by_alias=True)), []
    except ValidationError as exc:
        return (), format_errors(exc, root=path)


@dataclass(frozen=True)
class SpecCheck:
    """A parsed spec (None when it does not parse) and every error, each naming its field."""

    spec: InferenceModelSpec | None
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors


def check_spec(
    raw: Mapping[str, Any], golden_cases: Iterable[GoldenCase] | None = None, gpu_product_label: str = ""
) -> SpecCheck:
    """Parse the CR's `spec` and run every check; the handler's single entry point."""
    try:
        spec = InferenceModelSpec.model_validate(dict(raw), by_alias=True)
    except ValidationError as exc:
        return SpecCheck(None, tuple(format_errors(exc)))
    return SpecCheck(spec, tuple(semantic_errors(spec, golden_cases, gpu_product_label)))


DRIFT_BASELINE_FORMAT = "infergate-input-baseline/v1"  # server/infergate_server/drift.py FORMAT
DRIFT_BASELINE_MAX_BYTES = 256 * 1024  # it goes into <name>-config beside server.yaml (1 MiB in all)


def check_drift_baseline(text: str) -> str:
    """Why `text` cannot be an input-drift baseline ("" when it can): size, JSON, format."""
    if len(text.encode("utf-8")) > DRIFT_BASELINE_MAX_BYTES:
        return f"over {DRIFT_BASELINE_MAX_BYTES} bytes"
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(doc, dict) or doc.get("format") != DRIFT_BASELINE_FORMAT:
        return (
            f"not a baseline (format must be {DRIFT_BASELINE_FORMAT}; write it with golden record --baseline)"
        )
    if not isinstance(doc.get("inputs"), dict) or not doc["inputs"]:
        return "a baseline needs inputs"
    return ""
