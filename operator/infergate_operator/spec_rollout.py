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
    """Failed measurements tolerated before the canary is aborted."""


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


class Rollout(ApiModel):
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
