"""The InferenceModel API: pydantic models that are the single source of truth for the CRD schema.

Field docstrings become CRD descriptions (`kubectl explain`). Cross-field rules are declared once per
model as `Rule`s: crd.py renders them as CEL `x-kubernetes-validations`, and the same predicate runs
in pydantic so a spec parsed in the operator fails with the same field path and message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from infergate_operator.spec_base import (
    API_VERSION,
    DURATION_RE,
    GROUP,
    KIND,
    PINNED_HF_RE,
    PINNED_OCI_RE,
    PLURAL,
    QUANTITY_RE,
    SHA256_RE,
    URI_RE,
    URI_SCHEMES,
    VERSION,
    ApiModel,
    Backend,
    Datatype,
    ModelFormat,
    Phase,
    Precision,
    Provider,
    Quantity,
    Rule,
    exactly_one,
)
from infergate_operator.spec_golden import ConfigMapKeyRef, Golden, GoldenCase, Quarantine, TensorData
from infergate_operator.spec_rollout import (
    AnalysisStep,
    Canary,
    CanaryAnalysis,
    CanaryStatus,
    CanaryStep,
    GatewayApiRouting,
    NginxRouting,
    Pause,
    Rollout,
    Shadow,
    TrafficRouting,
)
from infergate_operator.spec_tenancy import NetworkPeer, NetworkPolicy, Tenancy, Tls

__all__ = [
    "API_VERSION",
    "DURATION_RE",
    "GROUP",
    "KIND",
    "PINNED_HF_RE",
    "PINNED_OCI_RE",
    "PLURAL",
    "QUANTITY_RE",
    "SHA256_RE",
    "URI_RE",
    "URI_SCHEMES",
    "VERSION",
    "AnalysisStep",
    "ApiModel",
    "Autoscaling",
    "Backend",
    "Batching",
    "Canary",
    "CanaryAnalysis",
    "CanaryStatus",
    "CanaryStep",
    "Condition",
    "ConfigMapKeyRef",
    "Datatype",
    "GatewayApiRouting",
    "Golden",
    "GoldenCase",
    "GoldenFailedCase",
    "GoldenStatus",
    "Gpu",
    "Hardware",
    "InferenceModelSpec",
    "InferenceModelStatus",
    "InputDrift",
    "ModelFormat",
    "ModelSource",
    "Monitoring",
    "NetworkPeer",
    "NetworkPolicy",
    "NginxRouting",
    "Pause",
    "Phase",
    "Precision",
    "Provenance",
    "Quantity",
    "Quarantine",
    "QuarantineStatus",
    "QuarantinedPod",
    "ReplacedPod",
    "Rollout",
    "Rule",
    "Runtime",
    "RuntimeMismatch",
    "RuntimeStatus",
    "Scheduling",
    "ServicePort",
    "Shadow",
    "Signature",
    "SuspectNode",
    "Tenancy",
    "TensorData",
    "Tls",
    "Toleration",
    "TrafficRouting",
]  # fmt: skip

# --- model ------------------------------------------------------------------------------------------


class Signature(ApiModel):
    """OpenSSF model-signing (Sigstore) bundle that must verify the artifact before it is loaded."""

    bundle_uri: str = Field(max_length=2048)
    """Where the signature bundle lives (same schemes as model.uri)."""
    identity: str = Field(max_length=512)
    """Expected signer identity (certificate SAN, e.g. an e-mail or workflow URL)."""
    issuer: str = Field(max_length=512)
    """Expected OIDC issuer of the signer's certificate."""


# Shared by every artifact (model, tokenizer): the digest's form, and URIs whose content is pinned.
SHA256_FORMAT_RULE = Rule(
    "sha256",
    "!has(self.sha256) || self.sha256.matches('" + SHA256_RE + "')",
    "must be 64 lowercase hex characters",
    lambda a: a.sha256 is None or bool(re.match(SHA256_RE, a.sha256)),
)
PINS_CONTENT_CEL = "self.uri.matches('" + PINNED_HF_RE + "') || self.uri.matches('" + PINNED_OCI_RE + "')"
OCI_PINNED_MESSAGE = (
    "an oci:// artifact must pin its manifest digest: oci://<registry>/<repository>@sha256:<64 hex> "
    "(a tag can be moved; it is never enough)"
)
# Every artifact URI: oci:// only by digest. The API server refuses a tag with this message on the field.
OCI_PINNED_RULE = Rule(
    "uri",
    "!has(self.uri) || !self.uri.startsWith('oci://') || self.uri.matches('" + PINNED_OCI_RE + "')",
    OCI_PINNED_MESSAGE,
    lambda a: a.uri is None or not a.uri.startswith("oci://") or bool(re.match(PINNED_OCI_RE, a.uri)),
)


def _pins_content(uri: str) -> bool:
    return bool(re.match(PINNED_HF_RE, uri) or re.match(PINNED_OCI_RE, uri))


RELATIVE_PATH_RE = r"^[^/](?:[^/]*/)*[^/]+$"


def relative_path(path: str) -> bool:
    """A relative path without '.' or '..' segments (RELATIVE_PATH_CEL's pydantic twin)."""
    return bool(re.match(RELATIVE_PATH_RE, path)) and not ({".", ".."} & set(path.split("/")))


RELATIVE_PATH_CEL = (
    "self.path.matches('" + RELATIVE_PATH_RE + "') && !self.path.split('/').exists(p, p == '..' || p == '.')"
)


class ImageVolume(ApiModel):
    """The oci:// artifact is an OCI image mounted read-only as a Kubernetes image volume: the kubelet pulls
    it through the node's runtime (which checks every layer against the pinned manifest) instead of the fetch
    step copying it into the pod, and the fetch step verifies the mounted files against model.sha256 (and the
    signature) before the server loads them. Needs a runtime with image volumes (containerd 2.1+, CRI-O)."""

    path: str = Field(min_length=1, max_length=1024)
    """The model's file or directory inside the image, relative to the image's root (e.g. model.onnx)."""

    __rules__ = (
        Rule(
            "path",
            RELATIVE_PATH_CEL,
            "a relative path inside the image, without '.' or '..' segments",
            lambda v: relative_path(v.path),
        ),
    )


class ModelSource(ApiModel):
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
    pull_secret_name: str | None = Field(default=None, min_length=1, max_length=253)
    """A Secret of type kubernetes.io/dockerconfigjson in the model's namespace holding the credentials of
    the oci:// registry; mounted into the fetch step only (the server never sees it), or with imageVolume the
    pod's imagePullSecrets (the kubelet pulls)."""
    image_volume: ImageVolume | None = None
    """Mount the oci:// image as a read-only image volume instead of copying it (needs sha256)."""
    version: str | None = Field(default=None, max_length=63)
    """Human model version, reported in metadata and metrics."""
    outputs: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    """Output tensors the server returns (default: every output the model declares)."""

    __rules__ = (
        Rule(
            "uri",
            "self.uri.matches('" + URI_RE + "')",
            "scheme must be one of " + ", ".join(f"{s}://" for s in URI_SCHEMES),
            lambda m: bool(re.match(URI_RE, m.uri)),
        ),
        OCI_PINNED_RULE,
        SHA256_FORMAT_RULE,
        Rule(
            "pullSecretName",
            "!has(self.pullSecretName) || self.uri.startsWith('oci://')",
            "only an oci:// uri is pulled with a pull secret",
            lambda m: m.pull_secret_name is None or m.uri.startswith("oci://"),
        ),
        Rule(
            "imageVolume",
            "!has(self.imageVolume) || self.uri.matches('" + PINNED_OCI_RE + "')",
            "only an oci://…@sha256:<digest> image can be mounted as an image volume",
            lambda m: m.image_volume is None or bool(re.match(PINNED_OCI_RE, m.uri)),
        ),
        Rule(
            "sha256",
            "!has(self.imageVolume) || has(self.sha256)",
            "required with imageVolume: the mounted files are verified against it before they are loaded",
            lambda m: m.image_volume is None or m.sha256 is not None,
        ),
        Rule(
            "sha256",
            "has(self.sha256) || " + PINS_CONTENT_CEL,
            "required unless uri pins content (hf://org/repo@<40-hex commit> or oci://…@sha256:<digest>)",
            lambda m: m.sha256 is not None or _pins_content(m.uri),
        ),
    )


# --- runtime ----------------------------------------------------------------------------------------


class Batching(ApiModel):
    """Dynamic batching in the server: requests wait up to maxQueueDelayMs to fill a batch."""

    max_batch_size: int = Field(default=1, ge=1, le=4096)
    """Largest batch handed to the backend, in rows (1 disables batching); also the most rows one
    request may carry, as in Triton (more is a 400)."""
    max_queue_delay_ms: int = Field(default=0, ge=0, le=10_000)
    """Longest a request waits for a batch to fill, in milliseconds."""


class Threads(ApiModel):
    """Threads of the inference runtime (ONNX Runtime's intra/inter-op pools)."""

    intra_op: int = Field(default=0, ge=0, le=1024)
    """Threads inside one operator; 0 takes hardware.cpu rounded up, or the runtime's default without it
    (which counts the host's cores, not the container's limit)."""
    inter_op: int = Field(default=0, ge=0, le=1024)
    """Threads running independent operators in parallel; 0 is the runtime's default."""


class Tokenizer(ApiModel):
    """Server-side tokenization: clients (and golden cases) may send a BYTES `text` tensor instead of
    token ids. The tokenizer file (Hugging Face tokenizer.json) is its own pinned artifact (uri), or a
    file inside the model's directory artifact (path)."""

    uri: str | None = Field(default=None, max_length=2048)
    """Where the tokenizer file is, with the same schemes as model.uri; fetched and verified beside the
    model."""
    sha256: str | None = Field(default=None, max_length=64)
    """SHA-256 of the tokenizer file (64 lowercase hex); required with uri unless the uri pins content."""
    path: str | None = Field(default=None, max_length=1024)
    """The tokenizer file's path inside the model's directory artifact, relative (e.g. tokenizer.json)."""
    input_name: str = Field(default="text", min_length=1, max_length=253)
    """Name of the BYTES input tensor that carries the text."""
    max_length: int = Field(default=128, ge=1, le=65_536)
    """Tokens per text after truncation; shorter texts are padded to the batch's longest."""

    __rules__ = (
        exactly_one(
            "uri", "path", "set exactly one of uri (its own artifact) or path (inside the model's directory)"
        ),
        Rule(
            "uri",
            "!has(self.uri) || self.uri.matches('" + URI_RE + "')",
            "scheme must be one of " + ", ".join(f"{s}://" for s in URI_SCHEMES),
            lambda t: t.uri is None or bool(re.match(URI_RE, t.uri)),
        ),
        OCI_PINNED_RULE,
        SHA256_FORMAT_RULE,
        Rule(
            "sha256",
            "!has(self.uri) || has(self.sha256) || " + PINS_CONTENT_CEL,
            "required with uri unless the uri pins content",
            lambda t: t.uri is None or t.sha256 is not None or _pins_content(t.uri),
        ),
        Rule(
            "path",
            "!has(self.path) || (" + RELATIVE_PATH_CEL + ")",
            "must be a relative path inside the model's directory, without . or .. segments",
            lambda t: t.path is None or relative_path(t.path),
        ),
    )


class Runtime(ApiModel):
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
    max_concurrent_batches: int = Field(default=1, ge=1, le=64)
    """Batches the backend runs at the same time, in batches (more than 1 helps GPUs, rarely CPUs)."""
    threads: Threads = Field(default_factory=Threads)
    """Runtime thread pools."""
    tokenizer: Tokenizer | None = None
    """Server-side tokenization (onnxruntime and transformers tensor models)."""
    providers: list[Provider] | None = Field(default=None, min_length=1, max_length=3)
    """ONNX Runtime execution providers in order of preference (default: TensorRT, CUDA, CPU, each taken
    when the node has it)."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Backend passthrough options (e.g. vLLM engine args), not interpreted by the operator."""

    __rules__ = (
        Rule(
            "tokenizer",
            "!has(self.tokenizer) || self.backend != 'vllm'",
            "not used by the vllm backend (vLLM tokenizes prompts itself)",
            lambda r: r.tokenizer is None or r.backend != "vllm",
        ),
    )


# --- hardware and scheduling ------------------------------------------------------------------------


class Gpu(ApiModel):
    """GPUs per replica: a resource limit plus a node selector on the GPU product label."""

    count: int = 1
    """GPUs per replica (the extended resource limit, nvidia.com/gpu by default)."""
    product: str | None = Field(default=None, max_length=63)
    """GPU product as labelled by GPU feature discovery (nvidia.com/gpu.product), e.g. NVIDIA-A10G."""

    __rules__ = (Rule("count", "self.count > 0", "must be > 0", lambda g: g.count > 0),)


class Hardware(ApiModel):
    """Per-replica compute: GPUs, CPU and memory (requests = limits for predictable latency)."""

    gpu: Gpu | None = None
    """GPUs per replica; omit for CPU-only serving."""
    cpu: Quantity | None = None
    """CPU per replica, a Kubernetes quantity (e.g. "2", "500m")."""
    memory: Quantity | None = None
    """Memory per replica, a Kubernetes quantity (e.g. 8Gi)."""


class Toleration(ApiModel):
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


class Scheduling(ApiModel):
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


class Autoscaling(ApiModel):
    """Horizontal autoscaling; when set, the autoscaler owns the replica count: an HPA (autoscaling/v2),
    or with minReplicas 0 a KEDA ScaledObject that removes the last replica after idleSeconds and adds one
    back when a request arrives (docs/autoscaling.md)."""

    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas kept; 0 scales to zero when idle (needs KEDA and its HTTP add-on in the cluster)."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas the HPA creates."""
    target_queue_depth: int = Field(default=8, ge=1, le=100_000)
    """Average inference_queue_depth per pod the HPA aims for, in requests."""
    target_cpu_utilization: int = Field(default=70, ge=1, le=100, alias="targetCPUUtilization")
    """Average CPU utilisation the HPA aims for, in percent of the request (used only when hardware.cpu
    is set: without a request there is nothing to be a percentage of)."""
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    """Window the HPA looks back over before scaling down, in seconds."""
    idle_seconds: int = Field(default=300, ge=10, le=86_400)
    """With minReplicas 0: how long the model must see no request and an empty queue before its last
    replica is removed, in seconds (KEDA's cooldownPeriod)."""
    hold_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    """With minReplicas 0: how long a request that arrives while no replica is Ready is held for one to
    pass its golden set, in seconds; past it the request gets 503 with Retry-After."""

    __rules__ = (
        Rule(
            "minReplicas",
            "self.minReplicas <= self.maxReplicas",
            "must be ≤ maxReplicas",
            lambda a: a.min_replicas <= a.max_replicas,
        ),
    )


class ServicePort(ApiModel):
    """The Service in front of the replicas."""

    port: int = Field(default=8080, ge=1, le=65_535)
    """Service port for OIP v2, health and metrics."""


class InputDrift(ApiModel):
    """Statistics of every model input over windows of live requests, and a drift score (PSI) against a
    baseline recorded by `infergate-server golden record --baseline` (issue 18)."""

    baseline_config_map_ref: ConfigMapKeyRef | None = None
    """The baseline JSON in a ConfigMap key (set key: the default is golden.yaml); unset, statistics only."""
    window_seconds: int = Field(default=60, ge=1, le=86_400)
    """A window is published once at least this old..."""
    min_values: int = Field(default=1000, ge=1, le=100_000_000)
    """...and holding at least this many values of an input."""


class Monitoring(ApiModel):
    """Prometheus Operator objects, made only where its CRDs (monitoring.coreos.com/v1) are installed."""

    service_monitor: bool = True
    """Create a ServiceMonitor scraping /metrics of every replica."""
    alerts: bool = True
    """Create a PrometheusRule with alerts on golden failures, error rate and queue saturation."""
    scrape_interval_seconds: int = Field(default=30, ge=5, le=600)
    """How often Prometheus scrapes a replica, in seconds."""
    input_drift: InputDrift | None = None
    """Input statistics and drift against a baseline; unset, off."""


# --- the spec ---------------------------------------------------------------------------------------


class InferenceModelSpec(ApiModel):
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
    """Horizontal autoscaling; when set, replicas is ignored and the HPA (or KEDA) owns scale."""
    golden: Golden | None = None
    """Golden inputs that gate readiness and canaries."""
    quarantine: Quarantine | None = None
    """Replacing a replica whose periodic golden check fails while its siblings pass; unset, the operator's
    defaults apply whenever golden.periodSeconds > 0 and there are two replicas or more."""
    rollout: Rollout = Field(default_factory=Rollout)
    """Rollout strategy for new revisions."""
    service: ServicePort = Field(default_factory=ServicePort)
    """Service settings."""
    monitoring: Monitoring = Field(default_factory=Monitoring)
    """ServiceMonitor and alerts (opt-out)."""
    image: str | None = Field(default=None, max_length=512)
    """Server image override; defaults to the operator's configured server image."""
    tenancy: Tenancy | None = None
    """API keys and per-tenant limits on the infer path; unset, the infer path is open."""
    network_policy: NetworkPolicy | None = None
    """Opt-in NetworkPolicy admitting only the listed peers; unset, no NetworkPolicy is made."""
    tls: Tls | None = None
    """HTTPS from a Secret's certificate; unset, plain HTTP."""

    __rules__ = (
        Rule(
            "quarantine",
            "!has(self.quarantine) || (has(self.golden) && self.golden.periodSeconds > 0)",
            "needs spec.golden with periodSeconds > 0: its periodic checks find the replica that goes wrong",
            lambda s: s.quarantine is None or (s.golden is not None and s.golden.period_seconds > 0),
        ),
        Rule(
            "tenancy",
            "!has(self.tenancy) || self.runtime.backend != 'vllm'",
            "not supported with the vllm backend yet: its OpenAI port has no tenant keys",
            lambda s: s.tenancy is None or s.runtime.backend != "vllm",
        ),
        Rule(
            "rollout",
            "!has(self.rollout) || !has(self.rollout.shadow) || !has(self.tls)",
            "shadow is not supported with spec.tls yet (the copies would need the candidate's CA)",
            lambda s: s.rollout.shadow is None or s.tls is None,
        ),
        Rule(
            "rollout",
            "!has(self.rollout) || !has(self.rollout.shadow) || "
            "(self.runtime.backend != 'vllm' && self.model.format != 'hf-causal-lm')",
            "shadow compares tensor outputs: not for generative models (vllm, hf-causal-lm) yet",
            lambda s: (
                s.rollout.shadow is None or (s.runtime.backend != "vllm" and s.model.format != "hf-causal-lm")
            ),
        ),
    )


# --- status -----------------------------------------------------------------------------------------


class Condition(ApiModel):
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


class GoldenFailedCase(ApiModel):
    """A golden case that did not reproduce its expected outputs on some pod."""

    name: str
    """The case's name in spec.golden."""
    result: str = "Failed"
    """Failed (measured, out of tolerance), Errored (could not run) or Inconclusive."""
    pod: str = ""
    """The first pod (by name) where it failed."""
    pods: int = 1
    """On how many of the pods read it failed."""
    max_abs_error: float | None = None
    """Largest absolute error of this case on the pods where it failed."""
    max_rel_error: float | None = None
    """Largest relative error of this case on the pods where it failed."""


class GoldenStatus(ApiModel):
    """Golden results read from the servers of the current revision's pods (GET /v2/models/{m}/golden).

    Rewritten when what they say changes (cases passing or failing, pods read or not, revision), else at
    most every 10 minutes, which is when checkedAt moves while results hold."""

    passed: int = 0
    """Cases that reproduced their expected outputs on every pod read."""
    failed: int = 0
    """Cases that did not, on at least one pod read."""
    max_abs_error: float | None = None
    """Largest absolute error seen in a tensor case, across the pods read."""
    max_rel_error: float | None = None
    """Largest relative error seen in a tensor case, across the pods read."""
    checked_at: str | None = None
    """When the operator read the results shown here (RFC 3339)."""
    revision: str | None = None
    """The revision (pod template hash) whose pods were read."""
    pods_read: int = 0
    """Pods of that revision whose server answered."""
    pods_unread: int = 0
    """Pods of that revision whose server could not be read (no route, refused, timed out)."""
    failed_cases: list[GoldenFailedCase] = Field(default_factory=list)
    """The failing cases, with the pod and their errors."""


class Provenance(ApiModel):
    """What is actually serving: digest, image, runtime and hardware."""

    sha256: str | None = None
    """Verified artifact digest."""
    image: str | None = None
    """Server image (by digest when known)."""
    backend: str | None = None
    """Runtime and version, e.g. onnxruntime 1.20.1."""
    hardware: str | None = None
    """Device the backend runs on, e.g. NVIDIA-A10G or cpu."""


class PhaseSeconds(ApiModel):
    """Seconds per start-up phase, as the replica's server measured them."""

    fetch: float | None = None
    """The init container's download and verification (its own record)."""
    verify: float | None = None
    """The server's re-verification before loading."""
    load: float | None = None
    """Loading the model into the runtime."""
    warmup: float | None = None
    """The runtime's first calls."""
    golden: float | None = None
    """Running the golden cases before readiness."""


class PhaseBytes(ApiModel):
    """Bytes a start-up phase read."""

    fetch: int | None = None
    """Bytes the init container put in place."""
    verify: int | None = None
    """Bytes the server hashed before loading."""


class ReplicaStartup(ApiModel):
    """One replica's start-up."""

    pod: str
    """The replica's pod."""
    seconds: PhaseSeconds = Field(default_factory=PhaseSeconds)
    """Seconds per phase."""
    bytes: PhaseBytes | None = None
    """Bytes per phase, where it reads them."""
    cache: Literal["hit", "miss", "refetched"] | None = None
    """With a node cache: hit (started from a verified entry, nothing downloaded), miss (filled it), refetched
    (the entry failed re-verification, was evicted and filled again)."""


class StartupStatus(ApiModel):
    """How the current revision's replicas started (at most 10 listed; the server metrics
    inference_startup_phase_seconds and inference_startup_cache have all)."""

    revision: str | None = None
    """The revision these replicas run (status.revision when they were read)."""
    replicas: list[ReplicaStartup] = Field(default_factory=list)
    """One entry per replica read, by pod name."""


class RuntimeMismatch(ApiModel):
    """A spec field the servers do not run as asked."""

    field: str
    """The spec field, e.g. spec.runtime.precision."""
    asked: str
    """What the spec asks."""
    running: str
    """What the server of `pod` reports running."""
    pod: str = ""
    """The first pod (by name) running something else."""
    pods: int = 1
    """How many of the pods read run something else."""


class RuntimeStatus(ApiModel):
    """What the servers of the current revision report running (GET /v2/models/{m}/golden, `runtime`):
    the facts of the first pod by name, and every spec field some pod runs differently."""

    revision: str | None = None
    """The revision (pod template hash) whose pods were read."""
    pods_reported: int = 0
    """Pods of that revision whose server reported its runtime facts."""
    pod: str | None = None
    """The pod the facts below are from."""
    backend: str | None = None
    """The server's backend (onnxruntime, vllm, tensorrt, transformers)."""
    runtime: str | None = None
    """Runtime name and version(s), e.g. onnxruntime 1.23.2."""
    provider: str | None = None
    """The execution provider or device doing the work, e.g. CPUExecutionProvider, cuda:0."""
    precision: str | None = None
    """The precision it computes in, as the runtime reports it (unknown when it does not)."""
    intra_op_threads: str | None = None
    """Intra-op threads as the runtime holds them (0: the runtime's default)."""
    inter_op_threads: str | None = None
    """Inter-op threads as the runtime holds them (0: the runtime's default)."""
    gpu_count: str | None = None
    """GPUs visible to the server."""
    gpu_product: str | None = None
    """The first GPU's product, spelled as the nvidia.com/gpu.product label (none without a GPU)."""
    gpu_memory_mi_b: str | None = Field(default=None, alias="gpuMemoryMiB")
    """The first GPU's memory, in MiB."""
    artifact_sha256: str | None = None
    """SHA-256 of the artifact the server loaded, as it computed it."""
    server: str | None = None
    """The model server and its version."""
    mismatches: list[RuntimeMismatch] = Field(default_factory=list)
    """Spec fields some pod runs differently (RuntimeMatchesSpec False)."""


class QuarantinedPod(ApiModel):
    """A pod whose latest periodic golden checks failed while other pods of its revision passed."""

    pod: str
    """The pod."""
    node: str = ""
    """The node it runs on."""
    failed_checks: int = 1
    """Its golden runs that failed in a row (each a separate run, as its server reported it)."""
    case: str = ""
    """The first case that failed in its latest run."""
    result: str = "Failed"
    """Its latest run's result: Failed (out of tolerance) or Errored (could not run)."""
    last_failed_at: str = ""
    """When its server ran the latest failed check (RFC 3339, milliseconds)."""
    state: Literal["Counting", "Held"] = "Counting"
    """Counting: fewer failed checks than spec.quarantine.replaceAfterFailedChecks; Held: due, but not
    replaced yet (see held)."""
    held: str = ""
    """Why it is not being replaced yet (the count, the replacement cap, the PDB, a rollout)."""


class ReplacedPod(ApiModel):
    """A pod the operator evicted for failing golden while its siblings passed."""

    pod: str
    """The evicted pod."""
    node: str = ""
    """The node it ran on."""
    failed_checks: int = 0
    """Failed golden checks in a row when it was evicted."""
    case: str = ""
    """The first case that failed in its last run."""
    replaced_at: str = ""
    """When the eviction was accepted (RFC 3339)."""


class SuspectNode(ApiModel):
    """A node the operator tainted because pods of several models failed golden on it."""

    node: str
    """The node."""
    taint: str
    """The taint put on it (key=value:effect)."""
    models: list[str] = Field(default_factory=list)
    """The models (namespace/name) whose pods failed there."""


class QuarantineStatus(ApiModel):
    """Pods that went wrong while their siblings passed golden, and what was done about it (observed only)."""

    pods: list[QuarantinedPod] = Field(default_factory=list)
    """Pods of the current revision failing golden while another pod of it passes."""
    replaced: list[ReplacedPod] = Field(default_factory=list)
    """The latest pods evicted for it (at most 10, newest last)."""
    nodes: list[SuspectNode] = Field(default_factory=list)
    """Nodes tainted infergate.io/suspect where this model's pods failed (opt-in)."""


class LostNode(ApiModel):
    """A node deleted while replicas of this model ran on it."""

    node: str
    """The node's name."""
    replicas: int = 0
    """This model's replicas that were on it."""
    lost_at: str = ""
    """When the operator saw it deleted (RFC 3339)."""


class SchedulingStatus(ApiModel):
    """Replicas lost with deleted nodes and what became of their replacements (observed only); dropped once
    every wanted replica is available again."""

    lost_nodes: list[LostNode] = Field(default_factory=list)
    """The deleted nodes, oldest loss first (at most 100)."""
    lost_replicas: int = 0
    """Replicas lost with them."""
    unschedulable_replicas: int = 0
    """This model's pods the scheduler cannot place now (PodScheduled=False, Unschedulable)."""


class InferenceModelStatus(ApiModel):
    """Observed state, written by the operator only."""

    phase: Phase = "Pending"
    """Summary for humans: Pending, Progressing, Paused, Ready, ScaledToZero (no replica wanted), Degraded or
    Failed."""
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
    canary: CanaryStatus | None = None
    """Canary details (strategy Canary only)."""
    last_known_good_revision: str | None = None
    """The revision that was stable before the current stable one: the target of
    spec.rollout.rollbackTo when the newest promotion turns out bad."""
    endpoint: str | None = None
    """In-cluster URL of the Service."""
    golden: GoldenStatus | None = None
    """Latest golden-check results."""
    provenance: Provenance | None = None
    """What is actually serving."""
    startup: StartupStatus | None = None
    """Start-up phases of the current revision's replicas, read from their servers."""
    runtime: RuntimeStatus | None = None
    """What the servers of the current revision report running, compared with the spec."""
    quarantine: QuarantineStatus | None = None
    """Replicas failing golden while their siblings pass, the ones replaced, nodes tainted for it."""
    scheduling: SchedulingStatus | None = None
    """Replicas lost with deleted nodes, and how many of this model's pods cannot be scheduled."""
