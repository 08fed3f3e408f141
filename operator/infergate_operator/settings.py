"""Operator configuration from the environment (prefix INFERGATE_), one field per knob.

Precedence, highest first: constructor arguments, environment variables, field defaults.
Lists are comma-separated (`a,b`), never JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

GOLDEN_URL_PLACEHOLDERS = ("service", "service_ip", "namespace", "port", "model")


class OperatorSettings(BaseSettings):
    """Everything the operator needs that is not in an InferenceModel."""

    model_config = SettingsConfigDict(
        env_prefix="INFERGATE_",
        extra="ignore",
        frozen=True,
        use_attribute_docstrings=True,
    )

    server_image: str = "ghcr.io/infergate/infergate-server:0.1.0"
    """Image the pods run unless spec.image overrides it; pin by digest in production."""
    image_pull_policy: str = "IfNotPresent"
    """Pull policy of the server and fetch containers."""
    gpu_resource_name: str = "nvidia.com/gpu"
    """Extended resource a GPU replica requests (the NVIDIA device plugin's name)."""
    gpu_product_label: str = "nvidia.com/gpu.product"
    """Node label holding the GPU product (set by GPU feature discovery)."""
    gpu_taint_key: str = "nvidia.com/gpu"
    """Taint key GPU nodes carry; GPU replicas tolerate it (effect NoSchedule)."""
    gpu_taint_value: str = "present"
    """Value of the GPU taint that GPU replicas tolerate."""
    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    """Namespaces to watch, comma-separated; empty watches the whole cluster."""
    golden_url_template: str = "http://{service}.{namespace}.svc:{port}/v2/models/{model}/golden"
    """URL the canary analysis calls for golden results; {service} {namespace} {port} {model} filled in, and
    {service_ip}: the canary Service's cluster IP, for an Argo Rollouts controller without cluster DNS (the
    local cluster's runs on the host)."""
    prometheus_address: str = "http://prometheus.monitoring.svc:9090"
    """Prometheus the canary analysis queries for latency and error rate."""
    keda_http_scaler_address: str = "keda-add-ons-http-external-scaler.keda:9090"
    """gRPC address KEDA reaches the HTTP add-on's external scaler at (scale from zero on held requests)."""
    wake_timeout_host: str = ""
    """DNS name (or `localhost`) at which the KEDA HTTP interceptor reaches this operator's wake-timeout
    responder (503 + Retry-After for a request held past holdTimeoutSeconds); empty: no responder, and the
    interceptor answers 502 itself."""
    wake_timeout_port: int = Field(default=8083, ge=1, le=65_535)
    """Port of the wake-timeout responder (served when wakeTimeoutHost is set)."""
    wake_retry_after_seconds: int = Field(default=10, ge=1, le=3600)
    """Retry-After the wake-timeout responder sends, in seconds."""
    listen_address: str = "0.0.0.0"
    """Address the operator's /healthz and /metrics bind to; 127.0.0.1 when run outside a pod."""
    health_port: int = Field(default=8081, ge=1, le=65_535)
    """Port of the operator's own /healthz."""
    metrics_port: int = Field(default=8082, ge=1, le=65_535)
    """Port of the operator's own Prometheus /metrics."""
    model_cache_size_limit: str = "50Gi"
    """emptyDir size limit for the fetched artifact, a quantity; large LLMs need more."""
    startup_timeout_seconds: int = Field(default=1800, ge=30, le=86_400)
    """How long a replica may take to fetch, load, warm up and pass golden before it is restarted,
    in seconds (the startup probe's budget; LLM loads take minutes)."""
    fetch_timeout_seconds: int = Field(default=3600, ge=30, le=86_400)
    """Deadline for the init container's fetch + verify, in seconds."""
    progress_deadline_seconds: int = Field(default=600, ge=60, le=86_400)
    """Deployment progressDeadlineSeconds: after this a stuck rollout is reported, in seconds."""
    shutdown_delay_seconds: float = Field(default=5.0, ge=0, le=300)
    """After SIGTERM a server keeps answering (not ready) this long, so that kube-proxy and load balancers
    drop it from the Service before it stops accepting connections, in seconds."""
    drain_timeout_seconds: float = Field(default=20.0, ge=0, le=3600)
    """Then it waits this long at most for requests in flight, in seconds (the grace period covers both)."""
    vllm_openai_port: int = Field(default=8000, ge=1, le=65_535)
    """Container and Service port of vLLM's OpenAI-compatible server."""
    oci_plain_http_registries: Annotated[tuple[str, ...], NoDecode] = ()
    """Registries (host:port, comma-separated) the fetch step pulls oci:// artifacts from over plain HTTP;
    every other registry is HTTPS (loopback registries are always plain HTTP, as in Docker)."""
    node_cache: str = Field(default="", pattern=r"^(|hostPath:/[^:]*|pvc:[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")
    """Node cache of verified artifacts shared by the replicas on a node: `hostPath:<dir>` (an existing
    directory writable by uid 65532) or `pvc:<claim>` (a node-local claim in each model's namespace); empty
    (default) gives every pod its own copy. docs/supply-chain.md."""
    node_cache_max_bytes: int = Field(default=0, ge=0)
    """Size the node cache is kept under by evicting least-recently-used entries after each fill; 0: no
    limit."""
    service_account_name: str = ""
    """Service account of the model pods (e.g. for workload identity to s3://); empty uses default."""
    reconcile_concurrency: int = Field(default=16, ge=1, le=1024)
    """How many models are reconciled at once. kopf starts one worker per object; without a bound a
    thousand new models queue a thousand requests behind the connection pool and time out together."""
    observe_interval_seconds: float = Field(default=300.0, ge=5, le=86_400)
    """Period of the safety-net re-read of each model's children, in seconds. Child watches drive status;
    this bounds the idle read load (1000 models / 300 s ≈ 3 reads/s) and must not be tight."""

    shards: int = Field(default=0, ge=0, le=256)
    """Virtual shards the models are split into across operator replicas (each a coordination.k8s.io Lease,
    see sharding.py); 0 runs unsharded, one replica active at a time by kopf's peering."""
    shard_namespace: str = "default"
    """Namespace of the shard and member Leases (the operator's own namespace in a cluster)."""
    shard_lease_seconds: int = Field(default=10, ge=4, le=300)
    """leaseDurationSeconds of the shard Leases: a replica that dies loses its shards after this long, in
    seconds; Leases are renewed every quarter of it (kube-controller-manager: 15 s, renewed every 2 s)."""

    golden_read_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Deadline for reading one server's golden report (connect included), in seconds. Pods the operator
    cannot reach (no route to pod IPs, a NetworkPolicy) then cost this much per read, not more."""
    golden_read_concurrency: int = Field(default=16, ge=1, le=1024)
    """How many servers' golden reports are read at once, across all models."""

    quarantine_failed_checks: int = Field(default=3, ge=0, le=100)
    """Default of spec.quarantine.replaceAfterFailedChecks: failed periodic golden checks in a row, while
    another pod of the revision passes, after which a pod is evicted and replaced; 0 only records it."""
    quarantine_max_replacing_percent: int = Field(default=50, ge=1, le=100)
    """Default of spec.quarantine.maxReplacingPercent: at most this percent of a model's replicas (rounded
    down) are being replaced at once."""
    quarantine_taint_nodes: bool = False
    """Opt-in: taint a node `infergate.io/suspect=GoldenFailedOnSeveralModels:NoSchedule` when pods of
    quarantineTaintMinModels models or more fail golden on it while their siblings pass, so replacements
    land elsewhere. The operator never removes the taint (`kubectl taint node <n> infergate.io/suspect-`)."""
    quarantine_taint_min_models: int = Field(default=2, ge=2, le=1000)
    """How many models' pods must fail on one node before it is tainted (with quarantineTaintNodes)."""
    debug_fault_injection: bool = False
    """Tests only: honour the InferenceModel annotation serving.infergate.io/debug-perturb-outputs-after-calls
    (rendered into the server's debug.perturbOutputsAfterCalls). Off: the annotation is ignored."""

    @field_validator("golden_url_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        try:
            value.format(**dict.fromkeys(GOLDEN_URL_PLACEHOLDERS, "x"))
        except (KeyError, IndexError, ValueError) as error:
            known = ", ".join(f"{{{key}}}" for key in GOLDEN_URL_PLACEHOLDERS)
            raise ValueError(f"not a URL template with placeholders among {known}: {error!r}") from None
        return value

    @field_validator("namespaces", "oci_plain_http_registries", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)
