"""The golden set: inputs with the outputs they must reproduce (tensor cases and LLM cases)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infergate_operator.spec_base import ApiModel, Datatype, Rule, exactly_one

# --- golden -----------------------------------------------------------------------------------------


class TensorData(ApiModel):
    """An Open Inference Protocol v2 tensor."""

    shape: list[int] = Field(max_length=8)
    """Dimensions; their product is the number of elements in data."""
    datatype: Datatype
    """OIP v2 datatype."""
    data: list[Any] = Field(max_length=65_536)
    """Elements in row-major order (flat or nested lists; strings for BYTES)."""


class GoldenCase(ApiModel):
    """One golden input and the output it must reproduce: a tensor case (inputs, expected, atol, rtol)
    or an LLM case (prompt, maxTokens, expectedText or expectedTokenIds; greedy decoding, fixed seed)."""

    name: str = Field(max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    """Case name, unique in the set; it appears in status and Events when it fails."""
    inputs: dict[str, TensorData] | None = Field(default=None, max_length=16)
    """Tensor case: named input tensors."""
    expected: dict[str, TensorData] | None = Field(default=None, max_length=16)
    """Tensor case: named output tensors the model must reproduce."""
    atol: float | None = Field(default=None, ge=0)
    """Tensor case: absolute tolerance per element (|a - e| <= atol + rtol·|e|); server default 1e-4."""
    rtol: float | None = Field(default=None, ge=0)
    """Tensor case: relative tolerance per element; server default 1e-4."""
    prompt: str | None = Field(default=None, max_length=16_384)
    """LLM case: the prompt, decoded greedily with a fixed seed."""
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    """LLM case: tokens to generate, in tokens."""
    expected_text: str | None = Field(default=None, max_length=65_536)
    """LLM case: the exact text the model must generate."""
    expected_token_ids: list[int] | None = Field(default=None, max_length=4096)
    """LLM case: the exact token ids the model must generate."""

    __rules__ = (
        Rule(
            "inputs",
            "has(self.inputs) != has(self.prompt)",
            "a case has either inputs (tensor case) or prompt (LLM case)",
            lambda c: (c.inputs is None) != (c.prompt is None),
        ),
        Rule(
            "expected",
            "has(self.inputs) == has(self.expected)",
            "a tensor case needs both inputs and expected",
            lambda c: (c.inputs is None) == (c.expected is None),
        ),
        Rule(
            "expectedText",
            "!has(self.prompt) || (has(self.expectedText) != has(self.expectedTokenIds))",
            "an LLM case needs exactly one of expectedText or expectedTokenIds",
            lambda c: c.prompt is None or ((c.expected_text is None) != (c.expected_token_ids is None)),
        ),
        Rule(
            "prompt",
            "has(self.prompt)"
            " || !(has(self.maxTokens) || has(self.expectedText) || has(self.expectedTokenIds))",
            "maxTokens, expectedText and expectedTokenIds belong to an LLM case (set prompt)",
            lambda c: (
                c.prompt is not None
                or (c.max_tokens is None and c.expected_text is None and c.expected_token_ids is None)
            ),
        ),
        Rule(
            "inputs",
            "has(self.inputs) || !(has(self.atol) || has(self.rtol))",
            "atol and rtol belong to a tensor case (set inputs)",
            lambda c: c.inputs is not None or (c.atol is None and c.rtol is None),
        ),
    )


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the InferenceModel's namespace."""

    name: str = Field(max_length=253)
    """ConfigMap name."""
    key: str = Field(default="golden.yaml", max_length=253)
    """Key holding a YAML list of golden cases (same shape as golden.cases)."""


class Golden(ApiModel):
    """Golden inputs with their expected outputs: a replica is Ready only when they reproduce. Keep inline
    sets small (the spec is copied into an annotation); put large ones in a ConfigMap via configMapRef."""

    cases: list[GoldenCase] | None = Field(default=None, max_length=64)
    """Inline golden cases."""
    config_map_ref: ConfigMapKeyRef | None = None
    """ConfigMap key holding the golden cases, instead of inline cases."""
    period_seconds: int = Field(default=60, ge=0, le=86_400)
    """How often a Ready replica re-checks its golden set, in seconds; 0 checks only at startup."""

    __rules__ = (exactly_one("cases", "configMapRef", "set exactly one of cases or configMapRef"),)


class Quarantine(ApiModel):
    """What the operator does with a replica whose periodic golden check fails while the other replicas of
    its revision pass: it records the pod in status.quarantine and an Event, and after
    replaceAfterFailedChecks failed checks in a row evicts it (the Eviction API, so the PDB holds) for its
    workload to replace. Unset fields take the operator's defaults (docs/correctness.md)."""

    replace_after_failed_checks: int | None = Field(default=None, ge=0, le=100)
    """Failed periodic golden checks in a row (each a separate run on that pod) after which the pod is
    replaced; 0 only records it. Unset: the operator's INFERGATE_QUARANTINE_FAILED_CHECKS (3)."""
    max_replacing_percent: int | None = Field(default=None, ge=1, le=100)
    """At most this percent of the model's replicas (rounded down) are being replaced at once, counting pods
    terminating or not yet Ready; with fewer than one allowed, nothing is replaced and status says so.
    Unset: the operator's INFERGATE_QUARANTINE_MAX_REPLACING_PERCENT (50)."""
