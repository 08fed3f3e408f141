"""ServerConfig: the server's whole configuration, and the contract the operator renders into its ConfigMap.

This module imports only the standard library and pydantic (the operator imports it to validate what it
renders). Field names mirror the InferenceModel spec (DESIGN §1) so the operator can copy them across.
"""

from __future__ import annotations

import enum
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel


class ConfigError(ValueError):
    """A configuration that cannot be served; each line names a field path (`runtime.batching.x`)."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, use_enum_values=False
    )


class ModelFormat(enum.StrEnum):
    ONNX = "onnx"
    TENSORRT_ENGINE = "tensorrt-engine"
    HF_TRANSFORMERS = "hf-transformers"
    HF_CAUSAL_LM = "hf-causal-lm"


class BackendName(enum.StrEnum):
    ONNXRUNTIME = "onnxruntime"
    VLLM = "vllm"
    TENSORRT = "tensorrt"
    TRANSFORMERS = "transformers"


class Precision(enum.StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


OCI_PINNED = r"^oci://[^/@]+/[^@]+@sha256:[0-9a-f]{64}$"


def _oci_pinned(uri: str | None) -> str | None:
    """An oci:// uri must pin its manifest digest (a tag can be moved); other schemes pass through."""
    if uri is not None and uri.startswith("oci://") and not re.match(OCI_PINNED, uri):
        raise ValueError(
            "an oci:// artifact must pin its manifest digest: oci://<registry>/<repository>@sha256:<64 hex>"
        )
    return uri


class SignatureConfig(_Model):
    """An OpenSSF model-signing signature. `identity` + `issuer` select Sigstore; `publicKey` a key pair."""

    bundle_uri: str
    identity: str | None = None
    issuer: str | None = None
    public_key: str | None = None

    @model_validator(mode="after")
    def _one_verifier(self) -> SignatureConfig:
        if self.public_key is None and (self.identity is None or self.issuer is None):
            raise ValueError("give identity and issuer (Sigstore) or publicKey")
        return self


class ModelConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    version: str = "1"
    uri: str | None = None
    path: Path
    format: ModelFormat = ModelFormat.ONNX
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    signature: SignatureConfig | None = None
    outputs: list[str] | None = None
    """Serve only these outputs (default: every output the model declares)."""
    image_volume: bool = False
    """`path` lies in a read-only image volume the kubelet mounted from the oci:// `uri` (the runtime checked
    its layers against the manifest): `fetch` copies nothing and verifies the files in place against
    `sha256` (and the signature) before the server loads them."""

    @field_validator("uri")
    @classmethod
    def _uri_pinned(cls, value: str | None) -> str | None:
        return _oci_pinned(value)

    @model_validator(mode="after")
    def _image_volume_pinned(self) -> ModelConfig:
        oci = self.uri is not None and self.uri.startswith("oci://")
        if self.image_volume and (self.sha256 is None or not oci):
            raise ValueError("imageVolume needs an oci:// uri and sha256 (the files are checked against it)")
        return self


class BatchingConfig(_Model):
    max_batch_size: int = Field(default=1, ge=1, le=4096)
    """Most rows one backend call may carry; 1 turns batching off. Also the most rows one request may
    carry, as in Triton: more is a 400."""
    max_queue_delay_ms: float = Field(default=0.0, ge=0.0, le=10_000.0)
    """How long a partial batch may wait for more requests; 0 never waits (the right choice on CPU)."""


class ThreadsConfig(_Model):
    intra_op: int = Field(default=0, ge=0)
    inter_op: int = Field(default=0, ge=0)


class TokenizerConfig(_Model):
    """Server-side tokenization: clients may send a BYTES `text` tensor instead of token ids."""

    path: Path
    input_name: str = "text"
    max_length: int = Field(default=128, ge=1, le=65536)
    uri: str | None = None
    """Where `fetch --config` gets the tokenizer file from (https://, s3://, pvc://, file://); unset: it is
    already at `path` (e.g. inside a directory artifact)."""
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the tokenizer file; checked by fetch and again before serve loads it."""

    @field_validator("uri")
    @classmethod
    def _uri_pinned(cls, value: str | None) -> str | None:
        return _oci_pinned(value)

    max_text_bytes: int = Field(default=64 * 1024, ge=1, le=16 * 1024 * 1024)
    """Longest text element taken (UTF-8 bytes); longer is a 400. The tokenizer reads a whole text
    before truncating it to maxLength, so this bounds the work one element can ask for."""


class RuntimeConfig(_Model):
    backend: BackendName = BackendName.ONNXRUNTIME
    precision: Precision = Precision.FP32
    batching: BatchingConfig = BatchingConfig()
    max_queue_depth: int = Field(default=256, ge=1)
    max_concurrent_batches: int = Field(default=1, ge=1, le=64)
    request_timeout_seconds: float = Field(default=30.0, gt=0.0)
    args: dict[str, Any] = Field(default_factory=dict)
    providers: list[str] | None = None
    threads: ThreadsConfig = ThreadsConfig()
    tokenizer: TokenizerConfig | None = None


class TensorData(_Model):
    """One OIP v2 tensor: shape, datatype and row-major data (flat or nested)."""

    shape: list[int]
    datatype: str
    data: list[Any]


class TensorCase(_Model):
    name: str
    inputs: dict[str, TensorData]
    expected: dict[str, TensorData]
    atol: float = Field(default=1e-4, ge=0.0)
    rtol: float = Field(default=1e-4, ge=0.0)


class PromptCase(_Model):
    """An LLM case: a greedy completion with a fixed seed, compared by token ids or by text prefix."""

    name: str
    prompt: str
    max_tokens: int = Field(default=8, ge=1)
    seed: int = 0
    expected_text: str | None = None
    expected_token_ids: list[int] | None = None

    @model_validator(mode="after")
    def _has_expectation(self) -> PromptCase:
        if self.expected_text is None and self.expected_token_ids is None:
            raise ValueError("give expectedText or expectedTokenIds")
        return self


def _case_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "prompt" if "prompt" in v else "tensor"
    return "prompt" if isinstance(v, PromptCase) else "tensor"


GoldenCase = Annotated[
    Annotated[TensorCase, Tag("tensor")] | Annotated[PromptCase, Tag("prompt")], Discriminator(_case_kind)
]


class GoldenConfig(_Model):
    cases: list[GoldenCase] = Field(default_factory=list)
    period_seconds: float = Field(default=60.0, ge=0.0)
    """Re-run every so often; 0 runs only at start."""
    required: bool = True
    """With no cases and required=false the model is ready once loaded; otherwise it never is."""


class DriftConfig(_Model):
    """Input statistics of live requests, and a drift score (PSI) against a recorded baseline."""

    baseline_path: Path | None = None
    """JSON written by `infergate-server golden record --baseline`; without it only statistics."""
    window_seconds: float = Field(default=60.0, ge=0.1, le=86_400.0)
    """A window closes (its statistics and score published) once it is this old..."""
    min_values: int = Field(default=1000, ge=1, le=100_000_000)
    """...and holds at least this many values of an input; until then it keeps collecting."""
    max_pending_requests: int = Field(default=1024, ge=1, le=1_000_000)
    """Served requests waiting to be folded into the window; more are counted as skipped, not kept."""


class ShadowConfig(_Model):
    """Copy a sample of served requests, after answering them, to a candidate server and compare its
    outputs with the answer given (the golden comparator: atol/rtol per tensor, BYTES exactly)."""

    target_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048)
    """The candidate's base URL, e.g. http://sentiment-canary.team-a.svc:8080."""
    model: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """The model's name on the candidate (default: this model's name)."""
    sample_percent: float = Field(gt=0.0, le=100.0)
    """Percent of served requests copied."""
    max_requests_per_second: float = Field(gt=0.0, le=100_000.0)
    """Cap on copies per second; sampled requests over it are dropped and counted."""
    max_queue: int = Field(default=64, ge=1, le=100_000)
    """Copies waiting to be sent; more are dropped and counted."""
    concurrency: int = Field(default=2, ge=1, le=64)
    """Copies in flight at once."""
    timeout_seconds: float = Field(default=5.0, gt=0.0, le=300.0)
    atol: float = Field(default=1e-4, ge=0.0)
    rtol: float = Field(default=1e-4, ge=0.0)


class DebugConfig(_Model):
    """Test switches (fault injection). Read only from this file, which the operator renders; nothing over
    HTTP reads or changes them. Never set them in production."""

    perturb_outputs_after_calls: int | None = Field(default=None, ge=0, le=1_000_000_000)
    """After this many answered infer requests, perturb every output (live answers and golden runs), so a
    replica goes wrong after it started right; unset, off."""


class TlsConfig(_Model):
    """Serve HTTPS with this PEM certificate (chain) and key, e.g. from a mounted kubernetes.io/tls Secret."""

    cert_file: Path
    key_file: Path


class ServerSection(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest infer response; a request whose answer would be larger gets a 400 naming the size."""
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    """Request line and headers together; a connection sending more is closed."""
    header_timeout_seconds: float = Field(default=10.0, gt=0.0, le=3600.0)
    """A connection must deliver a request's headers within this long, or it is closed."""
    body_timeout_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """A request's whole body must arrive within this long after its headers (408 otherwise)."""
    max_connections: int = Field(default=1024, ge=1)
    """Connections and in-flight requests held at once; beyond it new ones get 503."""
    shutdown_delay_seconds: float = Field(default=0.0, ge=0.0)
    """After SIGTERM, keep serving (not ready) this long so load balancers notice, then drain."""
    drain_timeout_seconds: float = Field(default=30.0, ge=0.0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    require_pinned: bool = False
    """Refuse to serve a model or tokenizer whose sha256 is not set (off: serve it with a warning)."""
    tls: TlsConfig | None = None
    """HTTPS instead of HTTP, on the same port."""
    readiness_hold_seconds: float = Field(default=0.0, ge=0.0, le=60.0)
    """A readiness request that arrives while the model is still starting waits up to this long for the
    verdict (golden passed or failed) before it answers. Keep it below the probe's timeoutSeconds."""


class TenantConfig(_Model):
    """One tenant: its API keys are the lines of <keysDir>/<name> (a key in the mounted Secret)."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
    models: list[str] = Field(default_factory=lambda: ["*"])
    """Models this tenant may call by name; "*" is every model."""
    requests_per_second: float | None = Field(default=None, gt=0.0)
    """Token-bucket rate; unset is unlimited."""
    burst: int | None = Field(default=None, ge=1)
    """Token-bucket size (default: one second's worth of requestsPerSecond, at least 1)."""
    max_concurrent: int | None = Field(default=None, ge=1)
    """Requests of this tenant in flight at once; more get 429."""


class TenancyConfig(_Model):
    """API keys and per-tenant limits on the infer path. With it, a request without a key is a 401 and a
    key not allowed on the model a 403; health, readiness and metrics stay open for probes."""

    keys_dir: Path
    """A mounted Secret: one file per tenant, named after it, holding its API keys one per line."""
    tenants: list[TenantConfig] = Field(min_length=1)
    reload_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """How often keysDir is read again, so a rotated Secret takes effect without a restart."""

    @model_validator(mode="after")
    def _unique(self) -> TenancyConfig:
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenant names must be unique: {names}")
        return self


class ServerConfig(_Model):
    model: ModelConfig
    runtime: RuntimeConfig = RuntimeConfig()
    golden: GoldenConfig = GoldenConfig()
    server: ServerSection = ServerSection()
    tenancy: TenancyConfig | None = None
    drift: DriftConfig | None = None
    shadow: ShadowConfig | None = None
    debug: DebugConfig | None = None

    @model_validator(mode="after")
    def _tenancy_on_the_oip_path(self) -> ServerConfig:
        if self.tenancy is not None and self.runtime.backend is BackendName.VLLM:
            raise ValueError(
                "tenancy is not supported with the vllm backend yet: its OpenAI port has no tenant keys"
            )
        return self

    @field_validator("runtime")
    @classmethod
    def _finite_timeout(cls, v: RuntimeConfig) -> RuntimeConfig:
        if not math.isfinite(v.request_timeout_seconds):
            raise ValueError("requestTimeoutSeconds must be finite")
        return v

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None = None) -> ServerConfig:
        """Validate `data`; relative paths resolve against `base_dir` (the config file's folder)."""
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError("\n".join(format_errors(exc))) from None
        return cfg.resolved(base_dir) if base_dir is not None else cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> ServerConfig:
        import yaml  # a base dependency; imported here so the module itself stays stdlib + pydantic

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        return cls.from_dict(data, base_dir=p.resolve().parent)

    def resolved(self, base_dir: Path) -> ServerConfig:
        """A copy with model.path and tokenizer.path made absolute against `base_dir`."""
        model = self.model.model_copy(update={"path": _absolute(self.model.path, base_dir)})
        runtime = self.runtime
        if runtime.tokenizer is not None:
            tok = runtime.tokenizer.model_copy(update={"path": _absolute(runtime.tokenizer.path, base_dir)})
            runtime = runtime.model_copy(update={"tokenizer": tok})
        drift = self.drift
        if drift is not None and drift.baseline_path is not None:
            drift = drift.model_copy(update={"baseline_path": _absolute(drift.baseline_path, base_dir)})
        return self.model_copy(update={"model": model, "runtime": runtime, "drift": drift})

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _absolute(p: Path, base: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


def format_errors(exc: ValidationError) -> list[str]:
    """One `field.path: message` line per pydantic error, using the YAML (camelCase) names."""
    lines = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif part not in ("tensor", "prompt") and not part.startswith("function-"):
                loc += f".{part}" if loc else part
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '<root>'}: {msg}")
    return lines
