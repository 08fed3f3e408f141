"""HorizontalPodAutoscaler `<name>` (autoscaling/v2): CPU and the per-pod `inference_queue_depth` metric."""

from __future__ import annotations

from typing import Any

from infergate_operator.context import BuildContext
from infergate_operator.spec import Autoscaling, InferenceModelSpec

QUEUE_DEPTH_METRIC = "inference_queue_depth"


def scale_target(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, str]:
    """The workload the HPA scales: the Rollout for canaries (never both), else the Deployment."""
    if spec.rollout.strategy == "Canary":
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": ctx.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": ctx.name}


def _metrics(spec: InferenceModelSpec, autoscaling: Autoscaling) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = []
    # Utilization is relative to the CPU request; without one the HPA could not compute it at all.
    if spec.hardware.cpu is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": autoscaling.target_cpu_utilization,
                    },
                },
            }
        )
    metrics.append(
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": QUEUE_DEPTH_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(autoscaling.target_queue_depth)},
            },
        }
    )
    return metrics


def behavior(autoscaling: Autoscaling) -> dict[str, Any]:
    return {
        # GPU replicas take minutes to load: add generously, remove one at a time after the window.
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 60},
                {"type": "Pods", "value": 2, "periodSeconds": 60},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": autoscaling.scale_down_stabilization_seconds,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def build_hpa(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    autoscaling = spec.autoscaling
    if autoscaling is None:
        raise ValueError("build_hpa needs spec.autoscaling")
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": ctx.metadata(),
        "spec": {
            "scaleTargetRef": scale_target(spec, ctx),
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": _metrics(spec, autoscaling),
            "behavior": behavior(autoscaling),
        },
    }
