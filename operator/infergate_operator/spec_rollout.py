"""Rollout strategy: RollingUpdate, or a Canary walked by Argo Rollouts and gated by analysis."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from infergate_operator.spec_base import ApiModel, Duration, Rule

# --- rollout ----------------------------------------------------------------------------------------


class Pause(ApiModel):
    """Hold the canary at its current weight."""

    duration: Duration | None = None
    """How long to pause (e.g. 30s, 2m); omit to pause until promoted."""


class AnalysisStep(ApiModel):
    """Run the `<name>-gates` analysis (golden, p95 latency, error rate) and abort the canary on failure."""


class CanaryStep(ApiModel):
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


class CanaryAnalysis(ApiModel):
    """Gates every canary revision must pass; a failure aborts and the stable revision keeps serving."""

    max_p95_latency_seconds: float | None = Field(default=None, gt=0)
    """Largest acceptable p95 of inference_latency_seconds for the canary, in seconds."""
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    """Largest acceptable ratio of failed to all requests for the canary (0 to 1)."""
    interval: Duration = "1m"
    """Time between measurements."""
    failure_limit: int = Field(default=2, ge=0, le=100)
    """Failed latency or error-rate measurements tolerated before the canary is aborted (a failed
    golden measurement aborts at once: golden outputs are deterministic)."""
    count: int = Field(default=3, ge=1, le=100)
    """Measurements per analysis step; a step takes about count times interval."""
    window: Duration = "1m"
    """Prometheus range the p95 and the error ratio are computed over (e.g. 30s, 2m); keep it at least
    twice the scrape interval."""
    max_shadow_divergence: float | None = Field(default=None, ge=0, le=1)
    """Largest acceptable share of shadowed requests (spec.rollout.shadow) whose canary outputs diverged
    from the stable's answers beyond tolerance (0 to 1), from the stable pods' metrics."""

    # A gate fails after more than failureLimit failed measurements of its count: with failureLimit >= count
    # it could never fail (a canary answering every request in 2.4 s against a 1 s limit was promoted).
    # The API server applies both fields' defaults before it evaluates the rule.
    __rules__ = (
        Rule(
            "failureLimit",
            "self.failureLimit < self.count",
            "failureLimit must be below count: a gate fails once more than failureLimit of its count "
            "measurements fail, so with failureLimit >= count the latency and error-rate gates never fail",
            lambda m: m.failure_limit < m.count,
        ),
    )


class NginxRouting(ApiModel):
    """Split traffic with the NGINX ingress controller."""

    stable_ingress: str = Field(max_length=253)
    """Ingress that routes to the stable Service."""


class GatewayApiRouting(ApiModel):
    """Split traffic with the Argo Rollouts Gateway API plugin."""

    http_route: str = Field(max_length=253)
    """HTTPRoute whose backend weights the plugin edits."""
    namespace: str | None = Field(default=None, max_length=63)
    """HTTPRoute namespace; defaults to the InferenceModel's."""


class TrafficRouting(ApiModel):
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


class Canary(ApiModel):
    """Canary steps and gates (Argo Rollouts)."""

    steps: list[CanaryStep] = Field(default_factory=list, max_length=32)
    """Steps walked by every new revision; empty uses the operator's default steps."""
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    """Gates every analysis step (and the background analysis) checks."""
    traffic_routing: TrafficRouting | None = None
    """Traffic splitting; omit to split by replica counts."""
    promote: str | None = Field(default=None, max_length=64)
    """Approve a revision (status.revision): its canary continues past pauses, as
    `kubectl argo rollouts promote` does; gates still run. Inert for any other revision."""
    promote_full: str | None = Field(default=None, max_length=64)
    """Promote a revision (status.revision) at once, skipping its remaining steps and gates, as
    `kubectl argo rollouts promote --full` does. Inert for any other revision."""
    abort: bool = False
    """While true, any canary in flight is aborted and the stable revision serves; set back to false to
    let the canary run again."""
    retry: str | None = Field(default=None, max_length=64)
    """Change this value (a counter or a timestamp) to retry an aborted canary once, as
    `kubectl argo rollouts retry rollout` does."""


class CanaryStatus(ApiModel):
    """Where the canary stands, as Argo Rollouts reports it."""

    phase: str = ""
    """Argo Rollouts phase: Progressing, Paused, Healthy or Degraded."""
    step: int | None = None
    """Index of the current step (equal to steps once every step is done)."""
    steps: int = 0
    """Number of steps of the Rollout."""
    stable_hash: str | None = None
    """rollouts-pod-template-hash of the stable ReplicaSet."""
    canary_hash: str | None = None
    """rollouts-pod-template-hash of the newest ReplicaSet."""
    aborted: bool = False
    """The canary of the newest revision was aborted; the stable revision serves."""
    failed_metric: str | None = None
    """Analysis metric that failed (golden, p95-latency or error-rate)."""
    failed_value: str | None = None
    """The failing measurement, as the provider returned it."""
    message: str = ""
    """Argo's own message."""


class Shadow(ApiModel):
    """Copy a sample of live requests, after the stable answered them, to the candidate and compare the
    outputs with the golden comparator (atol/rtol per tensor). The live answer never waits for it."""

    sample_percent: float = Field(gt=0, le=100)
    """Percent of answered requests copied."""
    max_requests_per_second: float = Field(gt=0, le=100_000)
    """Cap on copies per second per replica; sampled requests over it are dropped and counted."""
    target: str | None = Field(default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """An InferenceModel in this namespace to compare with (its Service, on this model's service port);
    unset: the canary Service (strategy Canary)."""
    atol: float = Field(default=1e-4, ge=0)
    """Absolute tolerance per output value."""
    rtol: float = Field(default=1e-4, ge=0)
    """Relative tolerance per output value."""


class Rollout(ApiModel):
    """How a new revision replaces the old one."""

    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    """RollingUpdate (a Deployment) or Canary (an Argo Rollouts Rollout gated by analysis)."""
    canary: Canary | None = None
    """Canary settings; only with strategy Canary."""
    rollback_to: str | None = Field(default=None, max_length=64)
    """Serve this earlier revision (e.g. status.lastKnownGoodRevision) instead of the one the spec
    renders, taken from the Rollout's kept ReplicaSets; remove it to follow the spec again. Canary only."""
    shadow: Shadow | None = None
    """Shadow traffic from the serving replicas to a candidate, with output diffs (issue 18). It is part
    of the pod template: enable it before rolling the candidate, so the stable replicas have it."""

    __rules__ = (
        Rule(
            "canary",
            "!has(self.canary) || self.strategy == 'Canary'",
            "only allowed with strategy Canary",
            lambda r: r.canary is None or r.strategy == "Canary",
        ),
        Rule(
            "rollbackTo",
            "!has(self.rollbackTo) || self.strategy == 'Canary'",
            "only allowed with strategy Canary",
            lambda r: r.rollback_to is None or r.strategy == "Canary",
        ),
        Rule(
            "shadow",
            "!has(self.shadow) || has(self.shadow.target) || self.strategy == 'Canary'",
            "needs shadow.target or strategy Canary (whose canary Service it copies to)",
            lambda r: r.shadow is None or r.shadow.target is not None or r.strategy == "Canary",
        ),
        Rule(
            "canary",
            "!has(self.canary) || !has(self.canary.analysis) || "
            "!has(self.canary.analysis.maxShadowDivergence) || has(self.shadow)",
            "analysis.maxShadowDivergence needs spec.rollout.shadow",
            lambda r: (
                r.canary is None or r.canary.analysis.max_shadow_divergence is None or r.shadow is not None
            ),
        ),
    )
