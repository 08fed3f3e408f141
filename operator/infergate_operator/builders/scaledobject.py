"""KEDA children: ScaledObject `<name>` (keda.sh/v1alpha1) and, for scale to zero, HTTPScaledObject `<name>`.

KEDA turns the ScaledObject into an HPA of its own (`keda-hpa-<name>`) fed by KEDA's metrics server
(external.metrics.k8s.io): the queue depth comes from Prometheus (a PromQL query on the pods' own
`inference_queue_depth`), CPU from metrics-server. With minReplicas 0 KEDA itself removes the last replica
after `idleSeconds` and adds one when the HTTP add-on's interceptor holds a request for the model (its
external-push scaler). The HTTPScaledObject only routes and holds: the add-on must not make a second
ScaledObject for it (annotation below). docs/autoscaling.md explains the choice.
"""

from __future__ import annotations

from typing import Any

from infergate_operator.builders.hpa import QUEUE_DEPTH_METRIC, behavior, scale_target
from infergate_operator.context import BuildContext
from infergate_operator.spec import Autoscaling, InferenceModelSpec

KEDA_API = "keda.sh/v1alpha1"
KEDA_HTTP_API = "http.keda.sh/v1alpha1"
SKIP_SCALED_OBJECT = "httpscaledobject.keda.sh/skip-scaledobject-creation"
# How often KEDA asks Prometheus while the model is active, and checks activation while at zero, in seconds.
POLLING_INTERVAL_S = 10


def wants_scaled_object(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    """KEDA owns scale when the model may go to zero (only KEDA can) or when KEDA is installed."""
    a = spec.autoscaling
    return a is not None and (a.min_replicas == 0 or ctx.keda)


def wants_http_scaled_object(spec: InferenceModelSpec) -> bool:
    """Requests are held while the model wakes only when it can be at zero."""
    return spec.autoscaling is not None and spec.autoscaling.min_replicas == 0


def queue_depth_query(ctx: BuildContext) -> str:
    """The model's total queue depth, summed over its replicas (labels the pods' scrape config gives)."""
    return f'sum({QUEUE_DEPTH_METRIC}{{namespace="{ctx.namespace}",model="{ctx.name}"}}) or vector(0)'


def _triggers(spec: InferenceModelSpec, ctx: BuildContext, a: Autoscaling) -> list[dict[str, Any]]:
    triggers: list[dict[str, Any]] = [
        {
            "type": "prometheus",
            "name": "queue-depth",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": ctx.settings.prometheus_address,
                "query": queue_depth_query(ctx),
                "threshold": str(a.target_queue_depth),
                # A queue at zero replicas cannot be seen: waking is the interceptor's trigger's job.
                "activationThreshold": "0",
            },
        }
    ]
    if spec.hardware.cpu is not None:
        triggers.append(
            {
                "type": "cpu",
                "name": "cpu",
                "metricType": "Utilization",
                "metadata": {"value": str(a.target_cpu_utilization)},
            }
        )
    if wants_http_scaled_object(spec):
        triggers.append(
            {
                "type": "external-push",
                "name": "held-requests",
                "metadata": {
                    "scalerAddress": ctx.settings.keda_http_scaler_address,
                    "httpScaledObject": ctx.name,
                },
            }
        )
    return triggers


def build_scaled_object(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    a = spec.autoscaling
    if a is None:
        raise ValueError("build_scaled_object needs spec.autoscaling")
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": ctx.metadata(),
        "spec": {
            "scaleTargetRef": scale_target(spec, ctx),
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "cooldownPeriod": a.idle_seconds,
            "pollingInterval": POLLING_INTERVAL_S,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": behavior(a)}},
            "triggers": _triggers(spec, ctx, a),
        },
    }


def hosts(ctx: BuildContext) -> list[str]:
    """Host headers the interceptor routes to this model: the Service's in-cluster names."""
    base = f"{ctx.service_name}.{ctx.namespace}"
    return [base, f"{base}.svc", f"{base}.svc.cluster.local"]


def build_http_scaled_object(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    a = spec.autoscaling
    if a is None or a.min_replicas != 0:
        raise ValueError("build_http_scaled_object needs spec.autoscaling.minReplicas 0")
    target = scale_target(spec, ctx)
    obj: dict[str, Any] = {
        "apiVersion": KEDA_HTTP_API,
        "kind": "HTTPScaledObject",
        "metadata": ctx.metadata(annotations={SKIP_SCALED_OBJECT: "true"}),
        "spec": {
            "hosts": hosts(ctx),
            "scaleTargetRef": {
                **target,
                "service": ctx.service_name,
                "port": spec.service.port,
            },
            "replicas": {"min": 0, "max": a.max_replicas},
            "scaledownPeriod": a.idle_seconds,
            # Requests held at the interceptor per replica: the same target as the server's own queue.
            "scalingMetric": {"concurrency": {"targetValue": a.target_queue_depth}},
            # conditionWait: how long a request waits for a Ready endpoint (Ready = golden passed).
            "timeouts": {
                "conditionWait": f"{a.hold_timeout_seconds}s",
                "responseHeader": f"{spec.runtime.request_timeout_seconds}s",
            },
        },
    }
    if ctx.settings.wake_timeout_host:
        # Past the hold, the request goes to the operator's responder: 503 + Retry-After, not a 502.
        obj["spec"]["coldStartTimeoutFailoverRef"] = {
            "service": waking_service_name(ctx),
            "port": ctx.settings.wake_timeout_port,
            "timeoutSeconds": a.hold_timeout_seconds,
        }
    return obj


def waking_service_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-waking"


def wants_waking_service(spec: InferenceModelSpec, ctx: BuildContext) -> bool:
    return wants_http_scaled_object(spec) and bool(ctx.settings.wake_timeout_host)


def build_waking_service(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """Service `<name>-waking`: the name the interceptor sends a request held too long to (ExternalName:
    the operator's wake-timeout responder, wherever the operator runs)."""
    port = ctx.settings.wake_timeout_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ctx.metadata(waking_service_name(ctx)),
        "spec": {
            "type": "ExternalName",
            "externalName": ctx.settings.wake_timeout_host,
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }
