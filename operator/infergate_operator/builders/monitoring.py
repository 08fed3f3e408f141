"""ServiceMonitor and PrometheusRule `<name>` (Prometheus Operator), built only where its CRDs exist."""

from __future__ import annotations

from typing import Any

from infergate_operator.context import LABEL_SERVICE, BuildContext
from infergate_operator.spec import InferenceModelSpec

MONITORING_API = "monitoring.coreos.com/v1"


def wants_service_monitor(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    return ctx.prometheus_operator and spec.monitoring.service_monitor


def wants_prometheus_rule(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    return ctx.prometheus_operator and spec.monitoring.alerts


def build_service_monitor(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    return {
        "apiVersion": MONITORING_API,
        "kind": "ServiceMonitor",
        "metadata": ctx.metadata(),
        "spec": {
            "selector": {"matchLabels": {LABEL_SERVICE: ctx.service_name}},
            "namespaceSelector": {"matchNames": [ctx.namespace]},
            # The canary gates query latency and errors per revision by this label.
            "podTargetLabels": ["rollouts-pod-template-hash"],
            "endpoints": [_endpoint(spec)],
        },
    }


def _endpoint(spec: InferenceModelSpec) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "port": "http",
        "path": "/metrics",
        "interval": f"{spec.monitoring.scrape_interval_seconds}s",
    }
    if spec.tls is not None:  # encrypted; Prometheus has no CA for the model's certificate (see Tls)
        endpoint["scheme"] = "https"
        endpoint["tlsConfig"] = {"insecureSkipVerify": True}
    return endpoint


def _alert(name: str, expr: str, duration: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": {"severity": severity},
        "annotations": {"summary": summary},
    }


def build_prometheus_rule(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    match = f'namespace="{ctx.namespace}", model="{ctx.name}"'
    depth = spec.runtime.max_queue_depth
    rules = [
        _alert(
            "InferGateGoldenCheckFailing",
            f'sum(increase(golden_checks_total{{{match}, result="failed"}}[10m])) > 0',
            "0m",
            "critical",
            f"{ctx.namespace}/{ctx.name}: golden outputs no longer reproduce",
        ),
        _alert(
            "InferGateHighErrorRate",
            f'sum(rate(inference_requests_total{{{match}, status=~"5.."}}[5m]))'
            f" / sum(rate(inference_requests_total{{{match}}}[5m])) > 0.05",
            "10m",
            "warning",
            f"{ctx.namespace}/{ctx.name}: more than 5% of requests fail",
        ),
        _alert(
            "InferGateQueueSaturated",
            f"max(inference_queue_depth{{{match}}}) > {int(depth * 0.9)}",
            "5m",
            "warning",
            f"{ctx.namespace}/{ctx.name}: request queue above 90% of maxQueueDepth ({depth})",
        ),
    ]
    return {
        "apiVersion": MONITORING_API,
        "kind": "PrometheusRule",
        "metadata": ctx.metadata(),
        "spec": {"groups": [{"name": f"infergate.{ctx.namespace}.{ctx.name}", "rules": rules}]},
    }
