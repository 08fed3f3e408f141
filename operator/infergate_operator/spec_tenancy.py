"""Who may reach a model and how: tenants (API keys and per-tenant limits, enforced by the server's
tenancy.py), the network (an opt-in NetworkPolicy), and TLS from a Secret."""

from __future__ import annotations

from pydantic import Field

from infergate_operator.spec_base import ApiModel, Rule


class Tenant(ApiModel):
    """One tenant. Its API keys are the value of the Secret's key named after it, one per line."""

    name: str = Field(max_length=63, pattern=r"^[a-z0-9]([a-z0-9_.-]*[a-z0-9])?$")
    """Tenant name: the Secret key holding its API keys, and the `tenant` label of its metrics."""
    models: list[str] = Field(default_factory=lambda: ["*"], max_length=64)
    """Models this tenant may call by name; "*" is every model. Others answer 403."""
    requests_per_second: float | None = Field(default=None, gt=0)
    """Token-bucket rate; unset is unlimited. Over it, 429 with Retry-After."""
    burst: int | None = Field(default=None, ge=1, le=100_000)
    """Token-bucket size; default one second's worth of requestsPerSecond."""
    max_concurrent: int | None = Field(default=None, ge=1, le=100_000)
    """Requests of this tenant in flight at once per replica; more answer 429."""


class Tenancy(ApiModel):
    """API keys on the infer path: without a key 401, with a key not allowed on the model 403. Health,
    readiness and metrics stay open for probes and Prometheus."""

    secret_name: str = Field(max_length=253, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    """Secret in the model's namespace: one key per tenant, its value that tenant's API keys, one per line.
    Mounted read-only into the server; the server keeps only their SHA-256 digests."""
    tenants: list[Tenant] = Field(min_length=1, max_length=64)
    """The tenants; names must be unique."""

    __rules__ = (
        Rule(
            "tenants",
            "self.tenants.all(t, self.tenants.exists_one(u, u.name == t.name))",
            "tenant names must be unique",
            lambda m: len({t.name for t in m.tenants}) == len(m.tenants),
        ),
    )


class NetworkPeer(ApiModel):
    """Pods allowed to reach the model: those matching podSelector in namespaces matching
    namespaceSelector (either may be omitted: all pods of the selected namespaces, or the named pods
    in the model's own namespace)."""

    namespace_selector: dict[str, str] | None = Field(default=None, max_length=16)
    """matchLabels of the namespaces, e.g. {kubernetes.io/metadata.name: ingress-nginx}."""
    pod_selector: dict[str, str] | None = Field(default=None, max_length=16)
    """matchLabels of the pods."""


class NetworkPolicy(ApiModel):
    """Opt-in: a NetworkPolicy so only the listed peers reach the model's pods (its HTTP port, and the
    OpenAI port for vLLM). List the ingress or gateway, Prometheus, and for canaries the operator and
    Argo Rollouts (they read the golden results); kubelet probes are not affected."""

    allow_from: list[NetworkPeer] = Field(min_length=1, max_length=32)
    """Who may connect; nobody else can."""


class Tls(ApiModel):
    """Serve HTTPS instead of HTTP, with the certificate of a kubernetes.io/tls Secret. Probes follow;
    Prometheus and the canary's golden check connect over TLS without verifying the certificate (they
    have no CA for it), so the data is encrypted but their peer is not authenticated."""

    secret_name: str = Field(max_length=253, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
    """kubernetes.io/tls Secret in the model's namespace (keys tls.crt and tls.key)."""
