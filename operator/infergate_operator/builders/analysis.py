"""AnalysisTemplates `<name>-gates` (the analysis steps) and `<name>-golden` (in the background): the
gates every canary revision must pass before it takes over.

Metrics (each a separate Argo metric, so a failure names the gate that failed):
- `golden`: Argo's web provider calls the canary's GET /v2/models/{model}/golden (URL from the operator's
  `golden_url_template`); success when `failed == 0`. Golden outputs are deterministic, so one failed
  measurement aborts (failureLimit 0).
- `p95-latency`: p95 of `inference_latency_seconds` of the canary's pods, from Prometheus.
- `error-rate`: share of 5xx in `inference_requests_total` of the canary's pods, from Prometheus.
- `shadow-divergence`: share of the requests the stable pods copied to the canary (spec.rollout.shadow)
  whose outputs diverged beyond tolerance, from the stable pods' `inference_shadow_requests_total`.
The Prometheus metrics select the canary by the `rollouts_pod_template_hash` label (the pods'
`rollouts-pod-template-hash`, as Prometheus' pod-label mapping spells it), passed in as the `canary-hash`
argument from the Rollout step. No samples (no traffic yet) is not a failure: NaN passes.
"""

from __future__ import annotations

from typing import Any

from infergate_operator.context import BuildContext
from infergate_operator.spec import CanaryAnalysis, InferenceModelSpec

ARGO_API = "argoproj.io/v1alpha1"
HASH_ARG = "canary-hash"
REVISION_LABEL = "rollouts_pod_template_hash"
GOLDEN_METRIC = "golden"
# Background golden: measurement errors tolerated in a row (a replica loading a large model for minutes).
BACKGROUND_ERROR_LIMIT = 10_000
LATENCY_METRIC = "p95-latency"
ERROR_METRIC = "error-rate"
SHADOW_METRIC = "shadow-divergence"
# The spec field each metric's threshold comes from, for messages.
METRIC_FIELDS = {
    GOLDEN_METRIC: "spec.golden",
    LATENCY_METRIC: "spec.rollout.canary.analysis.maxP95LatencySeconds",
    ERROR_METRIC: "spec.rollout.canary.analysis.maxErrorRate",
    SHADOW_METRIC: "spec.rollout.canary.analysis.maxShadowDivergence",
}


def analysis_template_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-gates"


def golden_template_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-golden"


def canary_service_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-canary"


def golden_service_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-golden"


def analysis(spec: InferenceModelSpec) -> CanaryAnalysis:
    canary = spec.rollout.canary
    return canary.analysis if canary is not None else CanaryAnalysis()


def golden_url(spec: InferenceModelSpec, ctx: BuildContext) -> str:
    service = golden_service_name(ctx)
    # Before the Service has an IP (its first apply): its DNS name. Argo copies the template when an
    # analysis starts, and a Rollout's first revision runs none, so later revisions get the IP.
    service_ip = ctx.golden_service_ip or f"{service}.{ctx.namespace}.svc"
    url = ctx.settings.golden_url_template.format(
        service=service,
        service_ip=service_ip,
        namespace=ctx.namespace,
        port=spec.service.port,
        model=ctx.name,
    )
    if spec.tls is not None and url.startswith("http://"):
        url = "https://" + url.removeprefix("http://")
    return url


def _selector(ctx: BuildContext) -> str:
    return f'namespace="{ctx.namespace}",model="{ctx.name}",{REVISION_LABEL}="{{{{args.{HASH_ARG}}}}}"'


def latency_query(ctx: BuildContext, window: str) -> str:
    inner = f"sum by (le) (rate(inference_latency_seconds_bucket{{{_selector(ctx)}}}[{window}]))"
    return f"scalar(histogram_quantile(0.95, {inner}))"


def error_rate_query(ctx: BuildContext, window: str) -> str:
    selector = _selector(ctx)
    errors = f'sum(rate(inference_requests_total{{{selector},status=~"5.."}}[{window}]))'
    total = f"sum(rate(inference_requests_total{{{selector}}}[{window}]))"
    return f"scalar({errors} / {total})"


def shadow_divergence_query(ctx: BuildContext, window: str) -> str:
    """The copies come from the pods that are not the canary's (the stable revision's)."""
    stable = f'namespace="{ctx.namespace}",model="{ctx.name}",{REVISION_LABEL}!="{{{{args.{HASH_ARG}}}}}"'
    diverged = f'sum(rate(inference_shadow_requests_total{{{stable},result="diverged"}}[{window}]))'
    compared = f'sum(rate(inference_shadow_requests_total{{{stable},result=~"matched|diverged"}}[{window}]))'
    return f"scalar({diverged} / {compared})"


def _prometheus_metric(
    name: str, query: str, limit: float, gates: CanaryAnalysis, ctx: BuildContext
) -> dict[str, Any]:
    return {
        "name": name,
        "interval": gates.interval,
        "count": gates.count,
        "failureLimit": gates.failure_limit,
        "successCondition": f"isNaN(result) || result <= {limit!r}",
        "provider": {"prometheus": {"address": ctx.settings.prometheus_address, "query": query}},
    }


def golden_metric(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    gates = analysis(spec)
    return {
        "name": GOLDEN_METRIC,
        "interval": gates.interval,
        "count": gates.count,
        "failureLimit": 0,
        "successCondition": "result.failed == 0",
        "provider": {"web": _golden_web(spec, ctx)},
    }


def _golden_web(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    web: dict[str, Any] = {"url": golden_url(spec, ctx), "jsonPath": "{$}", "timeoutSeconds": 10}
    if spec.tls is not None:  # Argo has no CA for the model's certificate (see Tls)
        web["insecure"] = True
    return web


def gate_metrics(spec: InferenceModelSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    gates = analysis(spec)
    metrics: list[dict[str, Any]] = [golden_metric(spec, ctx)]
    if gates.max_p95_latency_seconds is not None:
        query = latency_query(ctx, gates.window)
        metrics.append(_prometheus_metric(LATENCY_METRIC, query, gates.max_p95_latency_seconds, gates, ctx))
    if gates.max_error_rate is not None:
        query = error_rate_query(ctx, gates.window)
        metrics.append(_prometheus_metric(ERROR_METRIC, query, gates.max_error_rate, gates, ctx))
    if gates.max_shadow_divergence is not None:
        query = shadow_divergence_query(ctx, gates.window)
        metrics.append(_prometheus_metric(SHADOW_METRIC, query, gates.max_shadow_divergence, gates, ctx))
    return metrics


def build_analysis_template(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": ctx.metadata(analysis_template_name(ctx)),
        "spec": {"args": [{"name": HASH_ARG}], "metrics": gate_metrics(spec, ctx)},
    }


def build_golden_template(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """AnalysisTemplate `<name>-golden`: the golden metric alone, run in the background from the first
    step until the revision is promoted. A canary pod whose golden set fails never becomes ready, so
    Argo would never reach an analysis step; this run reads its results (the canary Service publishes
    not-ready pods) and aborts at once, naming the failing cases. Errors while the pod still loads
    (no endpoint, no results yet) are not failures."""
    metric = golden_metric(spec, ctx)
    del metric["count"]  # until the rollout ends
    metric["consecutiveErrorLimit"] = BACKGROUND_ERROR_LIMIT
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": ctx.metadata(golden_template_name(ctx)),
        "spec": {"metrics": [metric]},
    }


def background_analysis(ctx: BuildContext) -> dict[str, Any]:
    return {"templates": [{"templateName": golden_template_name(ctx)}]}


def analysis_step(ctx: BuildContext) -> dict[str, Any]:
    """The Rollout step running the gates against the newest (canary) ReplicaSet."""
    return {
        "analysis": {
            "templates": [{"templateName": analysis_template_name(ctx)}],
            "args": [{"name": HASH_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}}],
        }
    }
