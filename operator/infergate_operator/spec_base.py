"""Shared pieces of the InferenceModel API types: names, patterns, the base model and cross-field rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

GROUP = "serving.infergate.io"
VERSION = "v1alpha1"
KIND = "InferenceModel"
PLURAL = "inferencemodels"
API_VERSION = f"{GROUP}/{VERSION}"

URI_SCHEMES = ("pvc", "https", "s3", "hf", "oci")
SHA256_RE = r"^[0-9a-f]{64}$"
PINNED_HF_RE = r"^hf://[^@]+@[0-9a-f]{40}$"
PINNED_OCI_RE = r"^oci://[^/@]+/[^@]+@sha256:[0-9a-f]{64}$"
URI_RE = r"^(" + "|".join(URI_SCHEMES) + r")://.+"
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_RE = r"^(\+|-)?" + _NUMBER + r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?" + _NUMBER + r"))?$"
DURATION_RE = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

Backend = Literal["onnxruntime", "vllm", "tensorrt", "transformers"]
ModelFormat = Literal["onnx", "tensorrt-engine", "hf-transformers", "hf-causal-lm"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Provider = Literal["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip
Phase = Literal["Pending", "Progressing", "Paused", "Ready", "ScaledToZero", "Degraded", "Failed"]


def _to_str(value: object) -> object:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


Quantity = Annotated[
    str,
    BeforeValidator(_to_str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_RE,
        }
    ),
]
Duration = Annotated[str, Field(pattern=DURATION_RE, max_length=32)]


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `cel` for the API server, `check` for pydantic, one message for both."""

    field: str
    cel: str
    message: str
    check: Callable[[Any], bool]


def exactly_one(first: str, second: str, message: str) -> Rule:
    """A rule that one of two optional fields (camelCase names) is set and not both; its CEL and its
    pydantic check come from the same two names, so they cannot disagree."""
    a, b = to_snake(first), to_snake(second)
    return Rule(
        first,
        f"has(self.{first}) != has(self.{second})",
        message,
        lambda m: (getattr(m, a) is None) != (getattr(m, b) is None),
    )


def _schema_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, "fieldPath": "." + r.field} for r in rules
        ]


def _fail(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("cross_field", "{message}", {"field": field, "message": message})


class ApiModel(BaseModel):
    """Base of every API type: camelCase aliases, unknown fields refused, immutable, rules checked."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        frozen=True,
        json_schema_extra=_schema_rules,
    )
    __rules__: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in type(self).__rules__:
            if not rule.check(self):
                raise _fail(rule.field, rule.message)
        return self


_SUFFIXES = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity as a number (cores, bytes); ValueError if it does not parse."""
    if not re.match(QUANTITY_RE, text):
        raise ValueError(f"not a quantity: {text!r}")
    match = re.match(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9.]+)?)([a-zA-Z]*)$", text)
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]
