"""The InferenceModel API: pydantic models that are the single source of truth for the CRD schema.

Field docstrings become CRD descriptions (`kubectl explain`). Cross-field rules are declared once per
model as `Rule`s: crd.py renders them as CEL `x-kubernetes-validations`, and the same predicate runs
in pydantic so a spec parsed in the operator fails with the same field path and message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "serving.infergate.io"
VERSION = "v1alpha1"
KIND = "InferenceModel"
PLURAL = "inferencemodels"
API_VERSION = f"{GROUP}/{VERSION}"

URI_SCHEMES = ("pvc", "https", "s3", "hf", "oci")
SHA256_RE = r"^[0-9a-f]{64}$"
PINNED_HF_RE = r"^hf://[^@]+@[0-9a-f]{40}$"
PINNED_OCI_RE = r"^oci://.+@sha256:[0-9a-f]{64}$"
URI_RE = r"^(" + "|".join(URI_SCHEMES) + r")://.+"
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_RE = r"^(\+|-)?" + _NUMBER + r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?" + _NUMBER + r"))?$"
DURATION_RE = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

Backend = Literal["onnxruntime", "vllm", "tensorrt", "transformers"]
ModelFormat = Literal["onnx", "tensorrt-engine", "hf-transformers", "hf-causal-lm"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip
Phase = Literal["Pending", "Progressing", "Paused", "Ready", "Degraded", "Failed"]


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


def _schema_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "__rules__", ())
    if rules:
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, "fieldPath": "." + r.field} for r in rules
        ]


def _fail(field: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("cross_field", "{message}", {"field": field, "message": message})


class _Model(BaseModel):
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
    def _check_rules(self) -> _Model:
        for rule in type(self).__rules__:
            if not rule.check(self):
                raise _fail(rule.field, rule.message)
        return self


# --- model ------------------------------------------------------------------------------------------


class Signature(_Model):
    """OpenSSF model-signing (Sigstore) bundle that must verify the artifact before it is loaded."""

    bundle_uri: str = Field(max_length=2048)
    """Where the signature bundle lives (same schemes as model.uri)."""
    identity: str = Field(max_length=512)
    """Expected signer identity (certificate SAN, e.g. an e-mail or workflow URL)."""
    issuer: str = Field(max_length=512)
    """Expected OIDC issuer of the signer's certificate."""


def _pins_content(uri: str) -> bool:
    return bool(re.match(PINNED_HF_RE, uri) or re.match(PINNED_OCI_RE, uri))


class ModelSource(_Model):
    """The model artifact: where it is, what it is, and the digest it must have."""

    uri: str = Field(max_length=2048)
    """Artifact location: pvc://<claim>/<path>, https://…, s3://<bucket>/<key>, hf://<org>/<repo>@<commit>
    or oci://<ref>@sha256:<digest>."""
    format: ModelFormat
    """Artifact format; it decides which backends can load it."""
    sha256: str | None = Field(default=None, max_length=64)
    """SHA-256 of the file (64 lowercase hex), or of the manifest for a directory; required unless the
    uri pins content itself (hf://…@<40-hex commit>, oci://…@sha256:<digest>)."""
    signature: Signature | None = None
    """Optional OpenSSF model-signing bundle to verify."""
    version: str | None = Field(default=None, max_length=63)
    """Human model version, reported in metadata and metrics."""

    __rules__ = (
        Rule(
            "uri",
            "self.uri.matches('" + URI_RE + "')",
            "scheme must be one of " + ", ".join(f"{s}://" for s in URI_SCHEMES),
            lambda m: bool(re.match(URI_RE, m.uri)),
        ),
        Rule(
            "sha256",
            "!has(self.sha256) || self.sha256.matches('" + SHA256_RE + "')",
            "must be 64 lowercase hex characters",
            lambda m: m.sha256 is None or bool(re.match(SHA256_RE, m.sha256)),
        ),
        Rule(
            "sha256",
            "has(self.sha256) || self.uri.matches('"
            + PINNED_HF_RE
            + "') || self.uri.matches('"
            + PINNED_OCI_RE
            + "')",
            "required unless uri pins content (hf://org/repo@<40-hex commit> or oci://…@sha256:<digest>)",
            lambda m: m.sha256 is not None or _pins_content(m.uri),
        ),
    )


# --- runtime ----------------------------------------------------------------------------------------


class Batching(_Model):
    """Dynamic batching in the server: requests wait up to maxQueueDelayMs to fill a batch."""

    max_batch_size: int = Field(default=1, ge=1, le=4096)
    """Largest batch handed to the backend, in requests (1 disables batching)."""
    max_queue_delay_ms: int = Field(default=0, ge=0, le=10_000)
    """Longest a request waits for a batch to fill, in milliseconds."""


class Runtime(_Model):
    """How the server runs the model."""

    backend: Backend
    """Inference runtime inside the server image."""
    precision: Precision = "fp32"
    """Numeric precision the backend runs at."""
    batching: Batching = Field(default_factory=Batching)
    """Dynamic batching settings."""
    max_queue_depth: int = Field(default=256, ge=1, le=100_000)
    """Requests queued beyond this are refused with 429, in requests."""
    request_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    """Per-request deadline; a request past it gets 504, in seconds."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Backend passthrough options (e.g. vLLM engine args), not interpreted by the operator."""


# --- hardware and scheduling ------------------------------------------------------------------------


class Gpu(_Model):
    """GPUs per replica: a resource limit plus a node selector on the GPU product label."""

    count: int = 1
    """GPUs per replica (the extended resource limit, nvidia.com/gpu by default)."""
    product: str | None = Field(default=None, max_length=63)
    """GPU product as labelled by GPU feature discovery (nvidia.com/gpu.product), e.g. NVIDIA-A10G."""

    __rules__ = (Rule("count", "self.count > 0", "must be > 0", lambda g: g.count > 0),)


class Hardware(_Model):
    """Per-replica compute: GPUs, CPU and memory (requests = limits for predictable latency)."""

    gpu: Gpu | None = None
    """GPUs per replica; omit for CPU-only serving."""
    cpu: Quantity | None = None
    """CPU per replica, a Kubernetes quantity (e.g. "2", "500m")."""
    memory: Quantity | None = None
    """Memory per replica, a Kubernetes quantity (e.g. 8Gi)."""


class Toleration(_Model):
    """A pod toleration, as in the Pod API."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists matches any value; Equal matches value."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value to match with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated, in seconds."""


class Scheduling(_Model):
    """Where replicas may run and how they spread."""

    spread_across: Literal["zone", "node", "none"] = "zone"
    """Topology replicas spread across: zone (topology.kubernetes.io/zone), node (hostname), or none."""
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Extra node labels a replica's node must carry (merged with the GPU product selector)."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Extra tolerations (the GPU taint is tolerated automatically when a GPU is requested)."""
    priority_class_name: str = Field(default="", max_length=253)
    """PriorityClass for the pods; empty for the cluster default."""


# --- scale ------------------------------------------------------------------------------------------


class Autoscaling(_Model):
    """Horizontal autoscaling (autoscaling/v2); when set, the HPA owns the replica count."""

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas the HPA keeps."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas the HPA creates."""
    target_queue_depth: int = Field(default=8, ge=1, le=100_000)
    """Average inference_queue_depth per pod the HPA aims for, in requests."""
    target_cpu_utilization: int = Field(default=70, ge=1, le=100, alias="targetCPUUtilization")
    """Average CPU utilisation the HPA aims for, in percent of the request."""
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    """Window the HPA looks back over before scaling down, in seconds."""

    __rules__ = (
        Rule(
            "minReplicas",
            "self.minReplicas <= self.maxReplicas",
            "must be ≤ maxReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
        ),
    )


# --- golden -----------------------------------------------------------------------------------------


class TensorData(_Model):
    """An Open Inference Protocol v2 tensor."""

    shape: list[int] = Field(max_length=8)
    """Dimensions; their product is the number of elements in data."""
    datatype: Datatype
    """OIP v2 datatype."""
    data: list[Any] = Field(max_length=65_536)
    """Elements in row-major order (flat or nested lists; strings for BYTES)."""


class GoldenCase(_Model):
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


class ConfigMapKeyRef(_Model):
    """A key of a ConfigMap in the InferenceModel's namespace."""

    name: str = Field(max_length=253)
    """ConfigMap name."""
    key: str = Field(default="golden.yaml", max_length=253)
    """Key holding a YAML list of golden cases (same shape as golden.cases)."""


class Golden(_Model):
    """Golden inputs with their expected outputs: a replica is Ready only when they reproduce. Keep inline
    sets small (the spec is copied into an annotation); put large ones in a ConfigMap via configMapRef."""

    cases: list[GoldenCase] | None = Field(default=None, max_length=64)
    """Inline golden cases."""
    config_map_ref: ConfigMapKeyRef | None = None
    """ConfigMap key holding the golden cases, instead of inline cases."""
    period_seconds: int = Field(default=60, ge=0, le=86_400)
    """How often a Ready replica re-checks its golden set, in seconds; 0 checks only at startup."""

    __rules__ = (
        Rule(
            "cases",
            "has(self.cases) != has(self.configMapRef)",
            "set exactly one of cases or configMapRef",
            lambda g: (g.cases is None) != (g.config_map_ref is None),
        ),
    )


# --- rollout ----------------------------------------------------------------------------------------


class Pause(_Model):
    """Hold the canary at its current weight."""

    duration: Duration | None = None
    """How long to pause (e.g. 30s, 2m); omit to pause until promoted."""


class AnalysisStep(_Model):
    """Run the `<name>-gates` analysis (golden, p95 latency, error rate) and abort the canary on failure."""


class CanaryStep(_Model):
    """One canary step: exactly one of setWeight, pause or analysis."""

    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic sent to the canary."""
    pause: Pause | None = None
    """Pause the rollout."""
    analysis: AnalysisStep | None = None
    """Run the gates as a blocking step."""

    __rules__ = (
        Rule(
            "setWeight",
            "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
            "a step sets exactly one of setWeight, pause or analysis",
            lambda s: (
                [s.set_weight is not None, s.pause is not None, s.analysis is not None].count(True) == 1
            ),
        ),
    )


class CanaryAnalysis(_Model):
    """Gates every canary revision must pass; a failure aborts and the stable revision keeps serving."""

    max_p95_latency_seconds: float | None = Field(default=None, gt=0)
    """Largest acceptable p95 of inference_latency_seconds for the canary, in seconds."""
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    """Largest acceptable ratio of failed to all requests for the canary (0 to 1)."""
    interval: Duration = "1m"
    """Time between measurements."""
    failure_limit: int = Field(default=2, ge=0, le=100)
    """Failed measurements tolerated before the canary is aborted."""


class NginxRouting(_Model):
    """Split traffic with the NGINX ingress controller."""

    stable_ingress: str = Field(max_length=253)
    """Ingress that routes to the stable Service."""


class GatewayApiRouting(_Model):
    """Split traffic with the Argo Rollouts Gateway API plugin."""

    http_route: str = Field(max_length=253)
    """HTTPRoute whose backend weights the plugin edits."""
    namespace: str | None = Field(default=None, max_length=63)
    """HTTPRoute namespace; defaults to the InferenceModel's."""


class TrafficRouting(_Model):
    """Traffic splitting for the canary; omit for replica-count based splitting."""

    nginx: NginxRouting | None = None
    """NGINX ingress traffic routing."""
    gateway_api: GatewayApiRouting | None = Field(default=None, alias="gatewayAPI")
    """Gateway API (plugin) traffic routing."""

    __rules__ = (
        Rule(
            "nginx",
            "!(has(self.nginx) && has(self.gatewayAPI))",
            "set at most one of nginx or gatewayAPI",
            lambda t: t.nginx is None or t.gateway_api is None,
        ),
    )


class Canary(_Model):
    """Canary steps and gates (Argo Rollouts)."""

    steps: list[CanaryStep] = Field(default_factory=list, max_length=32)
    """Steps walked by every new revision; empty uses the operator's default steps."""
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    """Gates every analysis step (and the background analysis) checks."""
    traffic_routing: TrafficRouting | None = None
    """Traffic splitting; omit to split by replica counts."""


class Rollout(_Model):
    """How a new revision replaces the old one."""

    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    """RollingUpdate (a Deployment) or Canary (an Argo Rollouts Rollout gated by analysis)."""
    canary: Canary | None = None
    """Canary settings; only with strategy Canary."""

    __rules__ = (
        Rule(
            "canary",
            "!has(self.canary) || self.strategy == 'Canary'",
            "only allowed with strategy Canary",
            lambda r: r.canary is None or r.strategy == "Canary",
        ),
    )


class ServicePort(_Model):
    """The Service in front of the replicas."""

    port: int = Field(default=8080, ge=1, le=65_535)
    """Service port for OIP v2, health and metrics."""


# --- the spec ---------------------------------------------------------------------------------------


class InferenceModelSpec(_Model):
    """A model served by infergate: artifact, runtime, hardware, scale, golden set and rollout."""

    model: ModelSource
    """The model artifact."""
    runtime: Runtime
    """Backend, precision, batching and limits of the server."""
    hardware: Hardware = Field(default_factory=Hardware)
    """Per-replica GPUs, CPU and memory."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    """Placement and spreading of replicas."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Replica count when autoscaling is not set (the scale subresource writes it)."""
    autoscaling: Autoscaling | None = None
    """Horizontal autoscaling; when set, replicas is ignored and the HPA owns scale."""
    golden: Golden | None = None
    """Golden inputs that gate readiness and canaries."""
    rollout: Rollout = Field(default_factory=Rollout)
    """Rollout strategy for new revisions."""
    service: ServicePort = Field(default_factory=ServicePort)
    """Service settings."""
    image: str | None = Field(default=None, max_length=512)
    """Server image override; defaults to the operator's configured server image."""


# --- status -----------------------------------------------------------------------------------------


class Condition(_Model):
    """A status condition (the metav1.Condition shape)."""

    type: str = Field(max_length=316)
    """Condition type: Available, Progressing, Degraded, ArtifactVerified, GoldenPassed."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(max_length=1024)
    """CamelCase fact explaining the status."""
    message: str = Field(default="", max_length=32_768)
    """Human-readable details, naming the field or child at fault."""
    last_transition_time: str
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed for."""


class GoldenStatus(_Model):
    """Latest golden-check results across ready replicas."""

    passed: int = 0
    """Cases that reproduced their expected outputs."""
    failed: int = 0
    """Cases that did not."""
    max_abs_error: float | None = None
    """Largest absolute error seen in a tensor case."""
    checked_at: str | None = None
    """When the results were collected (RFC 3339)."""
    failed_cases: list[str] = Field(default_factory=list)
    """Names of failing cases."""


class Provenance(_Model):
    """What is actually serving: digest, image, runtime and hardware."""

    sha256: str | None = None
    """Verified artifact digest."""
    image: str | None = None
    """Server image (by digest when known)."""
    backend: str | None = None
    """Runtime and version, e.g. onnxruntime 1.20.1."""
    hardware: str | None = None
    """Device the backend runs on, e.g. NVIDIA-A10G or cpu."""


class InferenceModelStatus(_Model):
    """Observed state, written by the operator only."""

    phase: Phase = "Pending"
    """Summary for humans: Pending, Progressing, Paused, Ready, Degraded or Failed."""
    message: str = ""
    """Why the phase is what it is."""
    observed_generation: int | None = None
    """metadata.generation the status was computed for."""
    conditions: list[Condition] = Field(default_factory=list)
    """Available, Progressing, Degraded, ArtifactVerified, GoldenPassed."""
    replicas: int = 0
    """Replicas of the current workload (scale subresource)."""
    ready_replicas: int = 0
    """Replicas passing readiness (their golden set passed)."""
    ready_summary: str = "0/0"
    """readyReplicas/replicas, for the printer column."""
    revision: str | None = None
    """Hash of the rendered pod template."""
    stable_revision: str | None = None
    """Last revision that became fully available (the rollback target)."""
    canary_weight: int = 0
    """Percent of traffic on the canary."""
    canary_step: int | None = None
    """Index of the current canary step."""
    endpoint: str | None = None
    """In-cluster URL of the Service."""
    golden: GoldenStatus | None = None
    """Latest golden-check results."""
    provenance: Provenance | None = None
    """What is actually serving."""
