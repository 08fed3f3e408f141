"""Strategy Canary: an Argo Rollouts `Rollout` `<name>` (the Deployment's pod template), the gates'
AnalysisTemplate, and the `<name>-canary` / `<name>-stable` Services Argo points at each ReplicaSet.

Steps come from spec.rollout.canary.steps (defaults below). Every revision passes the gates before it
takes all traffic: when the steps have no analysis step, one is added before the end. A canary whose
pods never become ready aborts at the progress deadline (progressDeadlineAbort), so the stable
ReplicaSet keeps serving either way.
"""

from __future__ import annotations

from typing import Any

from infergate_operator.builders.analysis import (
    ARGO_API,
    analysis_step,
    background_analysis,
    build_analysis_template,
    build_golden_template,
    canary_service_name,
    golden_service_name,
)
from infergate_operator.builders.deployment import build_pod_template, owns_scale, template_revision
from infergate_operator.builders.service import build_service
from infergate_operator.context import ANNOTATION_REVISION, BuildContext
from infergate_operator.spec import CanaryStep, InferenceModelSpec, TrafficRouting

ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"
GATEWAY_API_PLUGIN = "argoproj-labs/gatewayAPI"
_DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {"setWeight": 20},
    {"analysis": {}},
    {"setWeight": 50},
    {"pause": {"duration": "1m"}},
    {"analysis": {}},
)
DEFAULT_STEPS = tuple(CanaryStep.model_validate(step) for step in _DEFAULT_STEPS)


def stable_service_name(ctx: BuildContext) -> str:
    return f"{ctx.name}-stable"


def canary_steps(spec: InferenceModelSpec) -> tuple[CanaryStep, ...]:
    """The spec's steps (or the defaults), with a final analysis step when none gates the revision."""
    canary = spec.rollout.canary
    steps = tuple(canary.steps) if canary is not None and canary.steps else DEFAULT_STEPS
    if not any(step.analysis is not None for step in steps):
        steps = (*steps, CanaryStep.model_validate({"analysis": {}}))
    return steps


def _step(step: CanaryStep, ctx: BuildContext) -> dict[str, Any]:
    if step.set_weight is not None:
        return {"setWeight": step.set_weight}
    if step.pause is not None:
        return {"pause": {"duration": step.pause.duration} if step.pause.duration else {}}
    return analysis_step(ctx)


def _traffic_routing(routing: TrafficRouting, ctx: BuildContext) -> dict[str, Any]:
    if routing.nginx is not None:
        return {"nginx": {"stableIngress": routing.nginx.stable_ingress}}
    if routing.gateway_api is not None:
        route = routing.gateway_api
        config = {"httpRoute": route.http_route, "namespace": route.namespace or ctx.namespace}
        return {"plugins": {GATEWAY_API_PLUGIN: config}}
    return {}


def rollout_template(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """The Deployment's pod template, spread per Argo revision and stamped with its own revision hash
    (status.revision), so each ReplicaSet says which revision it is (spec.rollout.rollbackTo finds it)."""
    template = build_pod_template(spec, ctx, hash_label=ROLLOUT_HASH_LABEL)
    template["metadata"]["annotations"][ANNOTATION_REVISION] = template_revision(template)
    return template


def build_rollout(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    canary: dict[str, Any] = {
        "canaryService": canary_service_name(ctx),
        "stableService": stable_service_name(ctx),
        # Capacity first: a canary pod is added before any stable pod goes away.
        "maxSurge": 1,
        "maxUnavailable": 0,
        "steps": [_step(step, ctx) for step in canary_steps(spec)],
        "analysis": background_analysis(ctx),
    }
    routing = spec.rollout.canary.traffic_routing if spec.rollout.canary is not None else None
    if routing is not None and _traffic_routing(routing, ctx):
        canary["trafficRouting"] = _traffic_routing(routing, ctx)
    workload: dict[str, Any] = {
        "selector": {"matchLabels": ctx.selector_labels},
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": ctx.settings.progress_deadline_seconds,
        "progressDeadlineAbort": True,
        "template": rollout_template(spec, ctx),
        "strategy": {"canary": canary},
    }
    if owns_scale(spec):
        workload = {"replicas": spec.replicas, **workload}
    return {"apiVersion": ARGO_API, "kind": "Rollout", "metadata": ctx.metadata(), "spec": workload}


def build_argo_service(spec: InferenceModelSpec, ctx: BuildContext, name: str) -> dict[str, Any]:
    """`<name>-canary` / `<name>-stable`: like the main Service but without a selector. Argo Rollouts
    writes the selector (the ReplicaSet's rollouts-pod-template-hash), and a Service's selector is an
    atomic map: applying ours too would be a tug of war over the whole map."""
    service = build_service(spec, ctx, name=name)
    del service["spec"]["selector"]
    return service


def build_golden_service(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    """`<name>-golden`: the newest revision's pods, ready or not, for the golden gate. Argo moves
    `<name>-canary`'s selector to the canary only once one of its pods is available, so a canary whose
    golden set keeps it unready would never be read through that Service: the gate would read the stable
    pods instead and pass. This one's selector is the operator's: the Rollout's currentPodHash (read by
    the caller; every pod of the model while none is known, as for a first revision, which runs no
    analysis)."""
    service = build_service(spec, ctx, name=golden_service_name(ctx))
    if ctx.candidate_hash:
        service["spec"]["selector"] = {**ctx.selector_labels, ROLLOUT_HASH_LABEL: ctx.candidate_hash}
    service["spec"]["publishNotReadyAddresses"] = True
    return service


def build_canary_workloads(spec: InferenceModelSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    """Everything strategy Canary adds: Services for Argo and the golden gate, the gates, the Rollout."""
    return [
        build_argo_service(spec, ctx, canary_service_name(ctx)),
        build_argo_service(spec, ctx, stable_service_name(ctx)),
        build_golden_service(spec, ctx),
        build_analysis_template(spec, ctx),
        build_golden_template(spec, ctx),
        build_rollout(spec, ctx),
    ]
