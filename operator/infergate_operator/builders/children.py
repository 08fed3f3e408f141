"""Plan the whole set of children: what to apply, in order, and what to delete because it is not wanted.

Plan, then execute: the caller applies `plan.apply` in order and deletes `plan.delete` (404 = done).
A strategy's workload builder receives the spec and context and returns its workload objects; the
canary builder (Rollout, AnalysisTemplate, canary/stable Services) slots into WORKLOADS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infergate_operator.builders.configmap import build_configmap
from infergate_operator.builders.deployment import build_deployment, template_revision
from infergate_operator.builders.hpa import build_hpa
from infergate_operator.builders.monitoring import (
    MONITORING_API,
    build_prometheus_rule,
    build_service_monitor,
    wants_prometheus_rule,
    wants_service_monitor,
)
from infergate_operator.builders.networkpolicy import build_network_policy, wants_network_policy
from infergate_operator.builders.pdb import build_pdb, wants_pdb
from infergate_operator.builders.rollout import build_canary_workloads
from infergate_operator.builders.scaledobject import (
    KEDA_API,
    KEDA_HTTP_API,
    build_http_scaled_object,
    build_scaled_object,
    build_waking_service,
    waking_service_name,
    wants_http_scaled_object,
    wants_scaled_object,
    wants_waking_service,
)
from infergate_operator.builders.service import build_service
from infergate_operator.context import ANNOTATION_REVISION, BuildContext
from infergate_operator.spec import InferenceModelSpec

WorkloadBuilder = Callable[[InferenceModelSpec, BuildContext], list[dict[str, Any]]]


def _rolling_update(spec: InferenceModelSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    return [build_deployment(spec, ctx)]


WORKLOADS: dict[str, WorkloadBuilder] = {"RollingUpdate": _rolling_update, "Canary": build_canary_workloads}
# Groups served only where an add-on is installed: a 404 on their kinds means "absent", not an error.
OPTIONAL_GROUPS = ("argoproj.io/", "monitoring.coreos.com/", "keda.sh/", "http.keda.sh/")


@dataclass(frozen=True, order=True)
class ChildRef:
    """One child by identity. `optional_crd`: its CRD may not be installed (a 404 on its kind is fine)."""

    api_version: str
    kind: str
    name: str
    optional_crd: bool = False

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ChildRef:
        api_version, kind = obj["apiVersion"], obj["kind"]
        return cls(api_version, kind, obj["metadata"]["name"], api_version.startswith(OPTIONAL_GROUPS))


def possible_children(ctx: BuildContext) -> tuple[ChildRef, ...]:
    """Every child any spec could produce, in apply order."""
    argo = "argoproj.io/v1alpha1"
    return (
        ChildRef("v1", "ConfigMap", ctx.config_map_name),
        ChildRef("v1", "Service", ctx.service_name),
        ChildRef("v1", "Service", f"{ctx.name}-canary"),
        ChildRef("v1", "Service", f"{ctx.name}-stable"),
        ChildRef("v1", "Service", f"{ctx.name}-golden"),
        ChildRef("v1", "Service", waking_service_name(ctx)),
        ChildRef(argo, "AnalysisTemplate", f"{ctx.name}-gates", optional_crd=True),
        ChildRef(argo, "AnalysisTemplate", f"{ctx.name}-golden", optional_crd=True),
        ChildRef("apps/v1", "Deployment", ctx.name),
        ChildRef(argo, "Rollout", ctx.name, optional_crd=True),
        ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", ctx.name),
        ChildRef(KEDA_HTTP_API, "HTTPScaledObject", ctx.name, optional_crd=True),
        ChildRef(KEDA_API, "ScaledObject", ctx.name, optional_crd=True),
        ChildRef("policy/v1", "PodDisruptionBudget", ctx.name),
        ChildRef("networking.k8s.io/v1", "NetworkPolicy", ctx.name),
        ChildRef(MONITORING_API, "ServiceMonitor", ctx.name, optional_crd=True),
        ChildRef(MONITORING_API, "PrometheusRule", ctx.name, optional_crd=True),
    )


class UnsupportedStrategyError(ValueError):
    """No workload builder is registered for spec.rollout.strategy."""


@dataclass(frozen=True)
class Plan:
    """What the caller does: apply `apply` in order (server-side apply), then delete `delete`."""

    apply: tuple[dict[str, Any], ...]
    delete: tuple[ChildRef, ...]
    revision: str
    """Hash of the workload's pod template (status.revision)."""


def supported_strategies() -> frozenset[str]:
    return frozenset(WORKLOADS)


def desired_children(spec: InferenceModelSpec, ctx: BuildContext) -> Plan:
    builder = WORKLOADS.get(spec.rollout.strategy)
    if builder is None:
        raise UnsupportedStrategyError(
            f"spec.rollout.strategy: {spec.rollout.strategy} is not supported by this operator version"
        )
    workloads = builder(spec, ctx)
    objects = [build_configmap(spec, ctx), build_service(spec, ctx), *workloads]
    if wants_scaled_object(spec, ctx):
        if wants_http_scaled_object(spec):
            objects.append(build_http_scaled_object(spec, ctx))
        if wants_waking_service(spec, ctx):
            objects.append(build_waking_service(spec, ctx))
        objects.append(build_scaled_object(spec, ctx))
    elif spec.autoscaling is not None:
        objects.append(build_hpa(spec, ctx))
    if wants_pdb(spec):
        objects.append(build_pdb(spec, ctx))
    if wants_network_policy(spec):
        objects.append(build_network_policy(spec, ctx))
    if wants_service_monitor(spec, ctx):
        objects.append(build_service_monitor(spec, ctx))
    if wants_prometheus_rule(spec, ctx):
        objects.append(build_prometheus_rule(spec, ctx))
    order = {ref: index for index, ref in enumerate(possible_children(ctx))}
    objects.sort(key=lambda obj: order.get(ChildRef.of(obj), len(order)))
    wanted = {ChildRef.of(obj) for obj in objects}
    # Without the Prometheus Operator (or KEDA) there is nothing of ours to delete, and asking would 404.
    delete = tuple(
        ref
        for ref in reversed(possible_children(ctx))
        if ref not in wanted
        and (ctx.prometheus_operator or ref.api_version != MONITORING_API)
        and (ctx.keda or ref.api_version not in (KEDA_API, KEDA_HTTP_API))
    )
    template = next(obj["spec"]["template"] for obj in workloads if "template" in obj.get("spec", {}))
    return Plan(apply=tuple(objects), delete=delete, revision=revision_of(template))


def revision_of(template: dict[str, Any]) -> str:
    """status.revision of a workload's pod template: the Rollout stamps it on the template (a rollback
    template carries its old one); the Deployment's is the hash of the template."""
    stamped = (template.get("metadata") or {}).get("annotations", {}).get(ANNOTATION_REVISION)
    return str(stamped) if stamped else template_revision(template)
