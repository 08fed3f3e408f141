"""Status from what the children show: pure, given a snapshot and the time.

The handler gathers an `Observed` (helpers below turn a Deployment and its Pods into one), calls
`compute_status(old, observed, generation, now)`, writes `status_patch(old, new)` only when
`changed(old, new)`, and emits an Event per item of `transitions(old, new)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from infergate_operator.conditions import (
    BAD_STATUS,
    CONDITION_ORDER,
    ConditionType,
    Message,
    Reason,
)
from infergate_operator.golden_status import (
    GOLDEN_STATUS_REFRESH_S,
    Condition,
    artifact_condition,
    condition,
    golden_condition,
    golden_status,
)
from infergate_operator.observed import Observed
from infergate_operator.quarantine_status import quarantine_status
from infergate_operator.runtime_status import runtime_condition, runtime_status
from infergate_operator.scheduling_status import nodes_lost_message, scheduling_status
from infergate_operator.startup_status import startup_status


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _available(observed: Observed) -> Condition:
    w = observed.workload
    if w is None:
        return condition(
            ConditionType.AVAILABLE,
            "False",
            Reason.WORKLOAD_NOT_FOUND,
            Message.WORKLOAD_NOT_FOUND.format(kind=observed.workload_kind, name=observed.name),
        )
    if w.available_replicas >= 1:
        text = Message.MINIMUM_REPLICAS_AVAILABLE.format(
            available=w.available_replicas, desired=w.desired_replicas
        )
        return condition(ConditionType.AVAILABLE, "True", Reason.MINIMUM_REPLICAS_AVAILABLE, text)
    if w.desired_replicas == 0:
        text = Message.SCALED_TO_ZERO.format(kind=observed.workload_kind, name=observed.name)
        return condition(ConditionType.AVAILABLE, "False", Reason.SCALED_TO_ZERO, text)
    text = Message.REPLICAS_UNAVAILABLE.format(available=w.available_replicas, desired=w.desired_replicas)
    return condition(ConditionType.AVAILABLE, "False", Reason.REPLICAS_UNAVAILABLE, text)


def _canary_progressing(observed: Observed, stable_revision: str | None) -> Condition | None:
    """Progressing for an Argo Rollout (None: the generic rules apply, e.g. no Rollout yet)."""
    c, w = observed.canary, observed.workload
    if c is None or w is None:
        return None
    revision = observed.revision or "?"
    if c.aborted:
        text = Message.CANARY_ABORTED.format(
            revision=revision, stable=stable_revision or c.stable_hash, detail=c.detail
        )
        return condition(ConditionType.PROGRESSING, "False", Reason.CANARY_ABORTED, text)
    if c.promoted:
        text = Message.CANARY_PROMOTED.format(
            revision=revision, steps=c.steps, available=w.available_replicas
        )
        return condition(ConditionType.PROGRESSING, "False", Reason.CANARY_PROMOTED, text)
    step = c.step if c.step is not None else 0
    if c.paused:
        text = Message.CANARY_PAUSED.format(
            revision=revision, step=step, steps=c.steps, weight=c.weight, detail=c.message or "waiting"
        )
        return condition(ConditionType.PROGRESSING, "True", Reason.CANARY_PAUSED, text)
    text = Message.CANARY_PROGRESSING.format(revision=revision, step=step, steps=c.steps, weight=c.weight)
    return condition(ConditionType.PROGRESSING, "True", Reason.CANARY_PROGRESSING, text)


def _progressing(observed: Observed, stable_revision: str | None) -> Condition:
    w = observed.workload
    revision = observed.revision or "?"
    if observed.invalid_spec:
        return condition(
            ConditionType.PROGRESSING, "False", Reason.INVALID_SPEC, "; ".join(observed.invalid_spec)
        )
    canary = _canary_progressing(observed, stable_revision)
    if canary is not None:
        return canary
    if observed.handover:
        return condition(ConditionType.PROGRESSING, "True", Reason.WORKLOAD_HANDOVER, observed.handover)
    if w is None:
        text = Message.PENDING.format(kind=observed.workload_kind, name=observed.name)
        return condition(ConditionType.PROGRESSING, "True", Reason.NEW_REVISION_ROLLING_OUT, text)
    if w.progress_deadline_exceeded:
        text = Message.PROGRESS_DEADLINE_EXCEEDED.format(
            kind=observed.workload_kind, name=observed.name, detail=w.progress_message
        )
        return condition(ConditionType.PROGRESSING, "False", Reason.PROGRESS_DEADLINE_EXCEEDED, text)
    if w.rolled_out:
        text = Message.NEW_REVISION_AVAILABLE.format(revision=revision, available=w.available_replicas)
        return condition(ConditionType.PROGRESSING, "False", Reason.NEW_REVISION_AVAILABLE, text)
    if w.templates_updated and observed.revision == stable_revision:
        # Same revision, replicas still loading (scale-up, a replaced pod): progress, not degradation;
        # stuck ones surface through pod facts or the workload's own progress deadline.
        text = Message.REPLICAS_STARTING.format(available=w.available_replicas, desired=w.desired_replicas)
        return condition(ConditionType.PROGRESSING, "True", Reason.REPLICAS_STARTING, text)
    text = Message.NEW_REVISION_ROLLING_OUT.format(
        revision=revision,
        updated=w.updated_replicas,
        desired=w.desired_replicas,
        available=w.available_replicas,
    )
    return condition(ConditionType.PROGRESSING, "True", Reason.NEW_REVISION_ROLLING_OUT, text)


def _degraded(observed: Observed, available: Condition, progressing: Condition, artifact: Condition,
              golden: Condition, scheduling: Mapping[str, Any] | None) -> Condition:  # fmt: skip
    """The first problem found, most fundamental first; False/AsExpected when there is none."""
    pods = observed.pods
    problems: list[tuple[Reason, str]] = []
    if observed.invalid_spec:
        problems.append((Reason.INVALID_SPEC, "; ".join(observed.invalid_spec)))
    if observed.conflicts:
        problems.append((Reason.FIELD_CONFLICT, "; ".join(observed.conflicts)))
    if observed.rejected:
        problems.append((Reason.CHILD_REJECTED, "; ".join(observed.rejected)))
    if observed.rollouts_missing:
        problems.append((Reason.ROLLOUTS_NOT_INSTALLED, observed.rollouts_missing))
    if observed.autoscaler_missing:
        problems.append((Reason.AUTOSCALER_NOT_INSTALLED, observed.autoscaler_missing))
    if progressing["reason"] == Reason.CANARY_ABORTED:
        problems.append((Reason.CANARY_ABORTED, progressing["message"]))
    if artifact["status"] == "False":
        problems.append((Reason(artifact["reason"]), artifact["message"]))
    if golden["status"] == "False":
        problems.append((Reason(golden["reason"]), golden["message"]))
    w = observed.workload
    if w is not None and w.replica_failure:
        text = Message.PODS_NOT_CREATED.format(
            kind=observed.workload_kind, name=observed.name, detail=w.replica_failure
        )
        problems.append((Reason.PODS_NOT_CREATED, text))
    if scheduling is not None:
        problems.append((Reason.NODES_LOST, nodes_lost_message(scheduling, observed)))
    if pods.unschedulable:
        detail = pods.unschedulable[0]
        problems.append(
            (Reason.UNSCHEDULABLE, Message.UNSCHEDULABLE.format(pods=len(pods.unschedulable), detail=detail))
        )
    for waiting in pods.waiting:
        if waiting.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            text = Message.IMAGE_PULL_FAILED.format(pod=waiting.pod, detail=waiting.message or waiting.reason)
            problems.append((Reason.IMAGE_PULL_FAILED, text))
        elif waiting.reason == "CrashLoopBackOff":
            text = Message.CONTAINER_CRASH_LOOPING.format(
                pod=waiting.pod, container=waiting.container, detail=waiting.message or waiting.reason
            )
            problems.append((Reason.CONTAINER_CRASH_LOOPING, text))
    if progressing["reason"] == Reason.PROGRESS_DEADLINE_EXCEEDED:
        problems.append((Reason.PROGRESS_DEADLINE_EXCEEDED, progressing["message"]))
    if w is not None and progressing["status"] == "False" and w.available_replicas < w.desired_replicas:
        problems.append((Reason.REPLICAS_UNAVAILABLE, available["message"]))
    if problems:
        reason, text = problems[0]
        return condition(ConditionType.DEGRADED, "True", reason, text)
    return condition(ConditionType.DEGRADED, "False", Reason.AS_EXPECTED, Message.AS_EXPECTED)


def _merge(new: Condition, old: Condition | None, generation: int, now: str) -> Condition:
    """Stamp observedGeneration; keep lastTransitionTime unless the status flipped."""
    flipped = old is None or old.get("status") != new["status"]
    stamp = now if flipped or not old or "lastTransitionTime" not in old else old["lastTransitionTime"]
    return {**new, "lastTransitionTime": stamp, "observedGeneration": generation}


def _phase(conditions: Mapping[str, Condition], observed: Observed) -> tuple[str, str]:
    available, progressing = conditions[ConditionType.AVAILABLE], conditions[ConditionType.PROGRESSING]
    degraded, artifact = conditions[ConditionType.DEGRADED], conditions[ConditionType.ARTIFACT_VERIFIED]
    permanent = observed.invalid_spec or (artifact["status"] == "False" and available["status"] == "False")
    if permanent:
        return "Failed", degraded["message"]
    if degraded["status"] == "True":
        return "Degraded", degraded["message"]
    if observed.paused or progressing["reason"] == Reason.CANARY_PAUSED:
        return "Paused", progressing["message"]
    if progressing["status"] == "True":
        return "Progressing", progressing["message"]
    if available["status"] == "True":
        w = observed.workload
        assert w is not None  # Available=True implies a workload
        text = Message.READY.format(
            ready=w.ready_replicas, desired=w.desired_replicas, revision=observed.revision
        )
        return "Ready", text
    if available["reason"] == Reason.SCALED_TO_ZERO:
        # Nothing wanted (an autoscaler at zero, or replicas: 0) and nothing wrong: not Pending, not Degraded.
        return "ScaledToZero", available["message"]
    return "Pending", available["message"]


def compute_status(
    old_status: Mapping[str, Any] | None, observed: Observed, generation: int, now: datetime
) -> dict[str, Any]:
    """The whole status for `generation`, given the previous status, the snapshot and the time."""
    old_status = old_status or {}
    stamp = rfc3339(now)
    old_conditions: dict[str, Condition] = {
        str(c.get("type")): dict(c) for c in old_status.get("conditions") or [] if isinstance(c, Mapping)
    }
    available = _available(observed)
    progressing = _progressing(observed, old_status.get("stableRevision"))
    artifact = artifact_condition(observed, old_conditions.get(ConditionType.ARTIFACT_VERIFIED), generation)
    golden = golden_condition(
        observed,
        old_conditions.get(ConditionType.GOLDEN_PASSED),
        generation,
        (old_status.get("golden") or {}).get("revision"),
    )
    scheduling = scheduling_status(old_status.get("scheduling"), observed)
    degraded = _degraded(observed, available, progressing, artifact, golden, scheduling)
    fresh: dict[str, Condition] = {
        ConditionType.AVAILABLE: available,
        ConditionType.PROGRESSING: progressing,
        ConditionType.DEGRADED: degraded,
        ConditionType.ARTIFACT_VERIFIED: artifact,
        ConditionType.GOLDEN_PASSED: golden,
        ConditionType.RUNTIME_MATCHES_SPEC: runtime_condition(observed.runtime, observed.revision),
    }
    merged: dict[str, Condition] = {
        kind: _merge(fresh[kind], old_conditions.get(kind), generation, stamp) for kind in CONDITION_ORDER
    }
    phase, message = _phase(merged, observed)
    w = observed.workload
    replicas = w.replicas if w else 0
    ready = w.ready_replicas if w else 0
    desired = w.desired_replicas if w else 0
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "conditions": [merged[kind] for kind in CONDITION_ORDER],
        "replicas": replicas,
        "readyReplicas": ready,
        "readySummary": f"{ready}/{desired}",
        "canaryWeight": observed.canary.weight if observed.canary else observed.canary_weight,
    }
    if observed.revision:
        status["revision"] = observed.revision
    promoted = (Reason.NEW_REVISION_AVAILABLE, Reason.CANARY_PROMOTED)
    rolled_out = progressing["reason"] in promoted and available["status"] == "True"
    old_stable = old_status.get("stableRevision")
    stable = observed.revision if rolled_out else old_stable
    if stable:
        status["stableRevision"] = stable
    last_good = old_stable if old_stable and stable != old_stable else old_status.get("lastKnownGoodRevision")
    if last_good:
        status["lastKnownGoodRevision"] = last_good
    step = observed.canary.step if observed.canary else observed.canary_step
    if step is not None:
        status["canaryStep"] = step
    if observed.canary is not None:
        status["canary"] = observed.canary.as_status()
    elif observed.handover and isinstance(old_status.get("canary"), Mapping):
        status["canary"] = dict(old_status["canary"])
    if observed.endpoint:
        status["endpoint"] = observed.endpoint
    results = golden_status(old_status.get("golden"), observed, now)
    if results is not None:
        status["golden"] = results
    runtime = runtime_status(old_status.get("runtime"), observed.runtime)
    if runtime is not None:
        status["runtime"] = runtime
    if observed.provenance:
        status["provenance"] = dict(observed.provenance)
    quarantine = quarantine_status(old_status.get("quarantine"), observed.quarantine)
    if quarantine is not None:
        status["quarantine"] = quarantine
    startup = startup_status(observed.revision, observed.startup)
    if startup is not None:
        status["startup"] = startup
    if scheduling is not None:
        status["scheduling"] = scheduling
    return status


def changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change anything (so an idle operator writes nothing)."""
    return dict(old or {}) != dict(new)


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch for the status: `new`, plus explicit nulls for keys `new` no longer has."""
    patch: dict[str, Any] = {key: None for key in (old or {}) if key not in new}
    patch.update(new)
    return patch


@dataclass(frozen=True)
class Transition:
    """One thing that changed, for an Event: a condition flip or reason change, or a phase change."""

    type: str
    old_status: str | None
    new_status: str
    reason: str
    message: str
    warning: bool = field(default=False)

    @property
    def event_type(self) -> str:
        return "Warning" if self.warning else "Normal"

    def summary(self) -> str:
        return (
            f"{self.type}: {self.old_status or 'None'} -> {self.new_status} ({self.reason}): {self.message}"
        )


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Transition]:
    """Condition status/reason changes (in condition order), then the phase change, each once."""
    old = old or {}
    before = {c.get("type"): c for c in old.get("conditions") or [] if isinstance(c, Mapping)}
    result: list[Transition] = []
    for cond in new.get("conditions") or []:
        prior = before.get(cond["type"])
        if prior is not None and (prior.get("status"), prior.get("reason")) == (
            cond["status"],
            cond["reason"],
        ):
            continue
        warning = BAD_STATUS.get(cond["type"]) == cond["status"]
        old_value = prior.get("status") if prior else None
        result.append(
            Transition(cond["type"], old_value, cond["status"], cond["reason"], cond["message"], warning)
        )
    if old.get("phase") != new.get("phase"):
        phase = str(new.get("phase"))
        warning = phase in ("Degraded", "Failed")
        result.append(
            Transition("Phase", old.get("phase"), phase, phase, str(new.get("message", "")), warning)
        )
    return result


def events_for(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Transition]:
    """The Events one status write posts: one per condition transition, the phase change told in the
    message of the condition Event that caused it (an Event of its own only when no condition moved).
    A new object gets one Event, for the phase it starts in, not one per condition appearing."""
    changes = transitions(old, new)
    phase = next((c for c in changes if c.type == "Phase"), None)
    cache = refetched_entries(old, new)
    if not (old or {}).get("conditions"):
        return ([phase] if phase is not None else []) + cache
    conditions = [c for c in changes if c.type != "Phase"]
    if phase is None or not conditions:
        return changes + cache
    carrier = next((c for c in conditions if c.warning == phase.warning), conditions[0])
    told = replace(carrier, message=f"{carrier.message} [phase {phase.old_status} -> {phase.new_status}]")
    return [told if c is carrier else c for c in conditions] + cache


def refetched_entries(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Transition]:
    """A Warning per replica newly reported `cache: refetched`: its node's cache entry failed
    re-verification and was evicted and fetched again."""

    def refetched(status: Mapping[str, Any] | None) -> set[str]:
        replicas = ((status or {}).get("startup") or {}).get("replicas") or []
        return {r["pod"] for r in replicas if isinstance(r, Mapping) and r.get("cache") == "refetched"}

    return [
        Transition(
            "NodeCache",
            None,
            "refetched",
            "NodeCacheEntryRefetched",
            f"pod {pod}: its node's cached copy of spec.model.uri failed re-verification; evicted and "
            "fetched again (the node's cache events.jsonl has the detail)",
            warning=True,
        )
        for pod in sorted(refetched(new) - refetched(old))
    ]


__all__ = [
    "GOLDEN_STATUS_REFRESH_S",
    "Transition",
    "changed",
    "compute_status",
    "events_for",
    "status_patch",
    "transitions",
]
