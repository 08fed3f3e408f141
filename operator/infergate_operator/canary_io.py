"""The canary's I/O for the reconciler: read the Rollout's AnalysisRuns and ReplicaSets, send the
patches canary.py decides (the same ones `kubectl argo rollouts promote|abort|retry` sends), and
hold back the deletion of the previous strategy's workload until the new one serves.

Decisions live in canary.py (pure); this module only fetches and writes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from infergate_operator import canary
from infergate_operator.builders.children import Plan
from infergate_operator.builders.rollout import ROLLOUT_HASH_LABEL
from infergate_operator.context import BuildContext
from infergate_operator.kube import ApiError, KubeClient, resource_path
from infergate_operator.observed import (
    CanaryObservation,
    Observed,
    WorkloadObservation,
    workload_from_deployment,
)
from infergate_operator.spec import InferenceModelSpec

LOG = logging.getLogger("infergate")
ARGO = canary.ARGO_API


async def _get(
    kube: KubeClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        return await kube.get(api_version, kind, namespace, name)
    except ApiError as error:
        if error.status == 404:  # the kind is not served (no Argo Rollouts CRDs)
            return None
        raise


async def observe_rollout(
    kube: KubeClient, spec: InferenceModelSpec, ctx: BuildContext, rollout: Mapping[str, Any]
) -> tuple[WorkloadObservation, CanaryObservation]:
    """Carries out the spec's user actions on the Rollout, then observes it and its newest runs."""
    patches = canary.actions(spec, rollout)
    for patch in patches:
        path = resource_path(ARGO, "Rollout", ctx.namespace, ctx.name)
        path += f"/{patch.subresource}" if patch.subresource else ""
        try:
            await kube.request("PATCH", path, body=patch.body, content_type="application/merge-patch+json")
        except ApiError as error:
            if error.status in (409, 429) or error.status >= 500:
                raise  # transient: the reconcile is retried
            # e.g. 403 without RBAC for rollouts/status: observe anyway, the action is retried next time
            LOG.warning(
                "%s/%s: %s on Rollout/%s refused: %s", ctx.namespace, ctx.name, patch.action, ctx.name, error
            )
            break
        LOG.info(
            "%s/%s: %s on Rollout/%s (spec.rollout.canary)", ctx.namespace, ctx.name, patch.action, ctx.name
        )
    if patches:
        rollout = await _get(kube, ARGO, "Rollout", ctx.namespace, ctx.name) or rollout
    current = (rollout.get("status") or {}).get("currentPodHash")
    runs: list[dict[str, Any]] = []
    if current:
        selector = f"{ROLLOUT_HASH_LABEL}={current}"
        try:
            runs = await kube.list(ARGO, "AnalysisRun", ctx.namespace, label_selector=selector)
        except ApiError as error:
            if error.status != 404:
                raise
    runs = [
        r for r in runs if any(o.get("name") == ctx.name for o in r["metadata"].get("ownerReferences") or [])
    ]
    return canary.workload_from_rollout(rollout), canary.observe(spec, rollout, runs)


async def with_canary(
    kube: KubeClient,
    spec: InferenceModelSpec,
    ctx: BuildContext,
    observed: Observed,
    workload: Mapping[str, Any] | None,
) -> Observed:
    """`observed` with the Rollout's counts and the canary's state, when the workload is a Rollout."""
    if workload is None or workload.get("kind") != "Rollout":
        return observed
    counts, state = await observe_rollout(kube, spec, ctx, workload)
    return replace(observed, workload=counts, canary=state, canary_weight=state.weight, paused=state.paused)


async def pin_rollback(
    kube: KubeClient, spec: InferenceModelSpec, ctx: BuildContext, plan: Plan
) -> Plan | str:
    """spec.rollout.rollbackTo: the plan serving that kept revision, or why it cannot."""
    target = spec.rollout.rollback_to
    if not target or plan.revision == target:
        return plan
    selector = ",".join(f"{k}={v}" for k, v in ctx.selector_labels.items())
    replicasets = await kube.list("apps/v1", "ReplicaSet", ctx.namespace, label_selector=selector)
    owned = [
        rs
        for rs in replicasets
        if any(o.get("kind") == "Rollout" for o in rs["metadata"].get("ownerReferences") or [])
    ]
    return canary.pin_template(plan, owned, target)


async def hold_handover(
    kube: KubeClient, plan: Plan, ctx: BuildContext, live: Mapping[str, Any | None], was_canary: bool
) -> tuple[Plan, str, bool]:
    """(plan, message, previous): the plan without deleting the previous strategy's workload while it
    still serves and the new one does not yet fully, a message saying so ("" when there is nothing to
    wait for), and whether the previous workload still exists.

    `was_canary`: status.canary is set; a Deployment plan looks for a leftover Rollout only then."""
    ref = canary.previous_workload(plan)
    if ref is None or (ref.kind == "Rollout" and not was_canary):
        return plan, "", False
    previous = await _get(kube, ref.api_version, ref.kind, ctx.namespace, ref.name)
    if previous is None:
        return plan, "", False
    new_obj = live.get(f"{'Rollout' if ref.kind == 'Deployment' else 'Deployment'}/{ref.name}")
    new: WorkloadObservation | None = None
    if new_obj is not None:
        rollout = new_obj.get("kind") == "Rollout"
        new = canary.workload_from_rollout(new_obj) if rollout else workload_from_deployment(new_obj)
    if not canary.handover_pending(new, previous):
        return plan, "", True
    return canary.hold_previous(plan), canary.handover_message(ref), True
