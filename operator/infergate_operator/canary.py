"""Canary (Argo Rollouts), pure: read a Rollout and its AnalysisRuns into an observation, turn the
spec's user actions into the patches `kubectl argo rollouts` itself sends, pin a rollback template,
and decide when switching strategies may remove the previous workload.

The reconciler fetches and writes; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from infergate_operator.builders.analysis import GOLDEN_METRIC, METRIC_FIELDS
from infergate_operator.builders.children import ChildRef, Plan
from infergate_operator.builders.rollout import ROLLOUT_HASH_LABEL
from infergate_operator.context import ANNOTATION_REVISION
from infergate_operator.observed import CanaryObservation, WorkloadObservation, dig, replica_failure
from infergate_operator.spec import GROUP, InferenceModelSpec

ARGO_API = "argoproj.io/v1alpha1"
# Rollout annotations recording what the operator did on the spec's behalf (never applied by SSA).
ABORTED_BY_SPEC = f"{GROUP}/aborted-by-spec"
RETRIED = f"{GROUP}/retried"
FAILED_PHASES = ("Failed", "Error")


# --- observation ---------------------------------------------------------------------------------


def workload_from_rollout(rollout: Mapping[str, Any]) -> WorkloadObservation:
    """Counts and progress of an argoproj.io Rollout; `current` also needs the newest revision stable."""
    status = rollout.get("status") or {}
    generation = str(dig(rollout, "metadata", "generation", default=""))
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    return WorkloadObservation(
        desired_replicas=int(dig(rollout, "spec", "replicas", default=1)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        current=str(status.get("observedGeneration", "")) == generation,
        progress_deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        progress_message=str(progressing.get("message", "")),
        replica_failure=replica_failure(status),
    )


def current_weight(rollout: Mapping[str, Any], step: int | None) -> int:
    """Traffic on the canary: the traffic router's figure, else the last setWeight reached."""
    routed = dig(rollout, "status", "canary", "weights", "canary", "weight")
    if routed is not None:
        return int(routed)
    steps: Sequence[Mapping[str, Any]] = dig(rollout, "spec", "strategy", "canary", "steps", default=[])
    if step is None:
        return 0
    if step >= len(steps):
        return 100
    weights = [int(s["setWeight"]) for s in steps[: step + 1] if "setWeight" in s]
    return weights[-1] if weights else 0


def _latest_failure(runs: Iterable[Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """(metric, value, message) of the newest failed measurement among `runs`."""
    ordered = sorted(runs, key=lambda r: str(dig(r, "metadata", "creationTimestamp", default="")))
    for run in reversed(ordered):
        for result in dig(run, "status", "metricResults", default=[]) or []:
            if result.get("phase") not in FAILED_PHASES:
                continue
            measurements = result.get("measurements") or []
            bad = [m for m in measurements if m.get("phase") in FAILED_PHASES] or measurements
            value = str(bad[-1].get("value", "")) if bad else ""
            message = str(result.get("message") or (bad[-1].get("message", "") if bad else ""))
            return str(result.get("name", "?")), value, message
    return None


def _threshold(spec: InferenceModelSpec, metric: str) -> float | None:
    gates = spec.rollout.canary.analysis if spec.rollout.canary is not None else None
    if gates is None:
        return None
    return {
        "p95-latency": gates.max_p95_latency_seconds,
        "error-rate": gates.max_error_rate,
        "shadow-divergence": gates.max_shadow_divergence,
    }.get(metric)


def failure_detail(spec: InferenceModelSpec, metric: str, value: str, message: str) -> str:
    """A gate failure in words, with the measured value and the spec field it is judged against."""
    field = METRIC_FIELDS.get(metric, "spec.rollout.canary.analysis")
    if metric == GOLDEN_METRIC:
        try:
            doc = json.loads(value)
        except ValueError:
            doc = None
        if isinstance(doc, Mapping):
            cases = [str(c.get("name")) for c in doc.get("cases") or [] if not c.get("passed", False)]
            failed = doc.get("failed", len(cases))
            return f"gate golden: {failed} case(s) failed: {', '.join(cases) or '(unnamed)'} ({field})"
        return f"gate golden: {message or value or 'no answer'} ({field})"
    limit = _threshold(spec, metric)
    bound = f", limit {limit:g}" if limit is not None else ""
    measured = f"measured {value}" if value else (message or "could not be measured")
    return f"gate {metric}: {measured}{bound} ({field})"


def observe(
    spec: InferenceModelSpec, rollout: Mapping[str, Any], analysis_runs: Iterable[Mapping[str, Any]] = ()
) -> CanaryObservation:
    """The canary's state; `analysis_runs`: the runs of the newest revision (any order)."""
    status = rollout.get("status") or {}
    steps = len(dig(rollout, "spec", "strategy", "canary", "steps", default=[]) or [])
    step_index = status.get("currentStepIndex")
    step = int(step_index) if step_index is not None else None
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    aborted = bool(status.get("abort")) and current != stable
    phase = str(status.get("phase", ""))
    workload = workload_from_rollout(rollout)
    promoted = (
        bool(current)
        and current == stable
        and workload.current
        and phase == "Healthy"
        and workload.rolled_out
    )
    paused = bool(status.get("pauseConditions")) or bool(dig(rollout, "spec", "paused", default=False))
    failed_metric = failed_value = None
    detail = ""
    if aborted:
        failure = _latest_failure(analysis_runs)
        annotations = dig(rollout, "metadata", "annotations", default={}) or {}
        if failure is not None:
            failed_metric, failed_value, message = failure
            detail = failure_detail(spec, failed_metric, failed_value, message)
        elif annotations.get(ABORTED_BY_SPEC) == current:
            detail = "aborted by spec.rollout.canary.abort"
        else:
            detail = str(status.get("message") or "aborted")
    return CanaryObservation(
        phase=phase,
        message=str(status.get("message", "")),
        step=step,
        steps=steps,
        weight=0 if aborted or promoted else current_weight(rollout, step),
        stable_hash=stable,
        canary_hash=current,
        aborted=aborted,
        paused=paused and not aborted and not promoted,
        promoted=promoted,
        failed_metric=failed_metric,
        failed_value=failed_value,
        detail=detail,
    )


# --- user actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutPatch:
    """A JSON merge patch on the Rollout (`subresource` "status" or "" for the object itself)."""

    subresource: str
    body: dict[str, Any]
    action: str
    """promote, promoteFull, abort, unabort or retry: for logs and Events."""


def rollout_revision(rollout: Mapping[str, Any]) -> str | None:
    """status.revision of the Rollout's current template (its revision annotation)."""
    value = dig(rollout, "spec", "template", "metadata", "annotations", ANNOTATION_REVISION)
    return str(value) if value else None


def _annotate(key: str, value: str | None) -> RolloutPatch:
    return RolloutPatch("", {"metadata": {"annotations": {key: value}}}, "annotate")


def actions(spec: InferenceModelSpec, rollout: Mapping[str, Any]) -> list[RolloutPatch]:
    """What to patch so the Rollout does what spec.rollout.canary's actions ask; [] when it already does.

    Idempotent: each action is judged against the Rollout's own state (and two annotations recording what
    the operator did), so re-running after a partial write does the rest and nothing twice."""
    canary = spec.rollout.canary
    if canary is None:
        return []
    status = rollout.get("status") or {}
    annotations = dig(rollout, "metadata", "annotations", default={}) or {}
    current, stable = status.get("currentPodHash"), status.get("stableRS")
    in_flight = bool(current) and current != stable
    revision = rollout_revision(rollout)
    aborted = bool(status.get("abort"))
    patches: list[RolloutPatch] = []
    if canary.abort:
        if in_flight and not aborted:
            patches += [
                _annotate(ABORTED_BY_SPEC, current),
                RolloutPatch("status", {"status": {"abort": True}}, "abort"),
            ]
        return patches
    if aborted and annotations.get(ABORTED_BY_SPEC) == current and in_flight:
        patches += [
            RolloutPatch("status", {"status": {"abort": False}}, "unabort"),
            _annotate(ABORTED_BY_SPEC, None),
        ]
        return patches
    if canary.retry and annotations.get(RETRIED) != canary.retry:
        if aborted and in_flight:
            patches.append(RolloutPatch("status", {"status": {"abort": False}}, "retry"))
        patches.append(_annotate(RETRIED, canary.retry))
        return patches
    if not in_flight or aborted or revision is None:
        return patches
    if canary.promote_full == revision and not status.get("promoteFull"):
        patches.append(RolloutPatch("status", {"status": {"promoteFull": True}}, "promoteFull"))
    elif canary.promote == revision and status.get("pauseConditions"):
        patches.append(RolloutPatch("status", {"status": {"pauseConditions": None}}, "promote"))
    return patches


# --- rollback ------------------------------------------------------------------------------------


def pin_template(plan: Plan, replicasets: Iterable[Mapping[str, Any]], revision: str) -> Plan | str:
    """The plan with the Rollout's template replaced by the kept ReplicaSet of `revision`, or why not."""
    template = next(
        (
            rs["spec"]["template"]
            for rs in replicasets
            if dig(rs, "spec", "template", "metadata", "annotations", ANNOTATION_REVISION) == revision
        ),
        None,
    )
    if template is None:
        return f"spec.rollout.rollbackTo: no kept ReplicaSet has revision {revision}"
    pinned = copy.deepcopy(dict(template))
    pinned.get("metadata", {}).get("labels", {}).pop(ROLLOUT_HASH_LABEL, None)
    applied = []
    for obj in plan.apply:
        if obj["kind"] == "Rollout":
            obj = copy.deepcopy(obj)
            obj["spec"]["template"] = pinned
        applied.append(obj)
    return replace(plan, apply=tuple(applied), revision=revision)


# --- switching strategies ------------------------------------------------------------------------

_CANARY_ONLY = frozenset({"Rollout", "AnalysisTemplate"})


def previous_workload(plan: Plan) -> ChildRef | None:
    """The other strategy's workload, which the plan deletes (the Rollout for a Deployment plan and
    the other way round)."""
    wanted = next((o for o in plan.apply if o["kind"] in ("Deployment", "Rollout")), None)
    if wanted is None:
        return None
    other = "Rollout" if wanted["kind"] == "Deployment" else "Deployment"
    name = wanted["metadata"]["name"]
    return next((ref for ref in plan.delete if ref.kind == other and ref.name == name), None)


def handover_pending(new: WorkloadObservation | None, previous: Mapping[str, Any] | None) -> bool:
    """The previous workload still has replicas and the new one is not yet fully available."""
    if previous is None:
        return False
    replicas = int(dig(previous, "status", "replicas", default=0) or 0)
    if replicas == 0:
        return False
    return new is None or new.available_replicas < new.desired_replicas or not new.current


def hold_previous(plan: Plan) -> Plan:
    """The plan minus the deletion of the previous workload and what it needs to keep serving (for a
    Rollout: its AnalysisTemplates and canary/stable/golden Services)."""
    ref = previous_workload(plan)
    if ref is None:
        return plan
    name = ref.name
    keep = {ref}
    if ref.kind == "Rollout":
        keep |= {r for r in plan.delete if r.kind in _CANARY_ONLY}
        keep |= {
            r
            for r in plan.delete
            if r.kind == "Service" and r.name in (f"{name}-canary", f"{name}-stable", f"{name}-golden")
        }
    return replace(plan, delete=tuple(r for r in plan.delete if r not in keep))


def handover_message(ref: ChildRef) -> str:
    new = "Rollout" if ref.kind == "Deployment" else "Deployment"
    return f"{ref.kind}/{ref.name} keeps serving until {new}/{ref.name} is fully available"
