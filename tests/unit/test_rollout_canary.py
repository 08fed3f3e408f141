"""canary.py (observation, user actions, rollback pinning, strategy handover) and canary status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from infergate_operator import canary
from infergate_operator.builders import desired_children
from infergate_operator.context import ANNOTATION_REVISION
from infergate_operator.observed import CanaryObservation, Observed, WorkloadObservation
from infergate_operator.status import compute_status, transitions

from tests.unit.igm import ModelWrapper, make_model

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
STEPS = [{"setWeight": 20}, {"pause": {}}, {"analysis": {}}, {"setWeight": 50}]


def model(**actions: Any) -> ModelWrapper:
    analysis = {"maxP95LatencySeconds": 0.2}
    return make_model().patch(
        {"rollout": {"strategy": "Canary", "canary": {"steps": STEPS, "analysis": analysis, **actions}}}
    )


def rollout(
    *,
    stable: str = "aaa",
    current: str = "bbb",
    step: int | None = 1,
    phase: str = "Paused",
    abort: bool = False,
    paused: bool = True,
    revision: str = "rev2",
    replicas: int = 2,
    updated: int = 1,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "stableRS": stable,
        "currentPodHash": current,
        "phase": phase,
        "observedGeneration": "3",
        "replicas": replicas + (1 if updated and current != stable else 0),
        "updatedReplicas": updated,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "message": "CanaryPauseStep" if paused else "",
    }
    if step is not None:
        status["currentStepIndex"] = step
    if abort:
        status["abort"] = True
    if paused:
        status["pauseConditions"] = [{"reason": "CanaryPauseStep"}]
        status["controllerPause"] = True
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "m", "generation": 3, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "strategy": {"canary": {"steps": STEPS}},
            "template": {"metadata": {"annotations": {ANNOTATION_REVISION: revision}}},
        },
        "status": status,
    }


def run(
    metric: str, value: str, phase: str = "Failed", created: str = "2026-11-25T12:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"m-{metric}", "creationTimestamp": created},
        "status": {
            "phase": phase,
            "metricResults": [
                {"name": "golden", "phase": "Successful", "measurements": [{"phase": "Successful"}]},
                {"name": metric, "phase": phase, "measurements": [{"phase": phase, "value": value}]},
            ],
        },
    }  # fmt: skip


# --- observation -------------------------------------------------------------------------------------


def test_paused_canary_reports_step_and_weight() -> None:
    seen = canary.observe(model().spec(), rollout())
    assert (seen.step, seen.steps, seen.weight, seen.paused, seen.aborted) == (1, 4, 20, True, False)


def test_weight_is_the_last_set_weight_reached_and_100_past_the_last_step() -> None:
    assert canary.current_weight(rollout(), 0) == 20
    assert canary.current_weight(rollout(), 3) == 50
    assert canary.current_weight(rollout(), 4) == 100
    routed = rollout()
    routed["status"]["canary"] = {"weights": {"canary": {"weight": 35}}}
    assert canary.current_weight(routed, 1) == 35


def test_promoted_when_the_newest_revision_is_stable_and_everywhere() -> None:
    done = rollout(stable="bbb", current="bbb", step=4, phase="Healthy", paused=False, updated=2)
    seen = canary.observe(model().spec(), done)
    assert seen.promoted
    assert seen.weight == 0
    assert not seen.paused


def test_golden_abort_names_the_failing_cases() -> None:
    cases = [{"name": "two-rows", "passed": True}, {"name": "negative", "passed": False}]
    value = json.dumps({"failed": 1, "passed": 1, "cases": cases})
    aborted = rollout(abort=True, paused=False, phase="Degraded", updated=0)
    seen = canary.observe(model().spec(), aborted, [run("golden", value)])
    assert seen.aborted
    assert seen.failed_metric == "golden"
    assert "negative" in seen.detail
    assert "two-rows" not in seen.detail
    assert "spec.golden" in seen.detail


def test_latency_abort_gives_the_value_the_limit_and_the_field() -> None:
    aborted = rollout(abort=True, paused=False, phase="Degraded", updated=0)
    older = run("p95-latency", "0.05", phase="Successful", created="2026-11-25T11:00:00Z")
    seen = canary.observe(model().spec(), aborted, [older, run("p95-latency", "0.7125")])
    assert seen.failed_metric == "p95-latency"
    assert seen.failed_value == "0.7125"
    assert seen.detail == (
        "gate p95-latency: measured 0.7125, limit 0.2 (spec.rollout.canary.analysis.maxP95LatencySeconds)"
    )


def test_abort_without_a_failed_run_says_who_aborted() -> None:
    by_spec = rollout(abort=True, annotations={canary.ABORTED_BY_SPEC: "bbb"})
    assert canary.observe(model().spec(), by_spec).detail == "aborted by spec.rollout.canary.abort"
    by_argo = rollout(abort=True)
    by_argo["status"]["message"] = "RolloutAborted: progress deadline exceeded"
    assert "progress deadline" in canary.observe(model().spec(), by_argo).detail


def test_rollout_counts_need_argo_to_have_seen_the_generation() -> None:
    stale = rollout()
    stale["status"]["observedGeneration"] = "2"
    assert not canary.workload_from_rollout(stale).current
    assert canary.workload_from_rollout(rollout()).current


# --- user actions --------------------------------------------------------------------------------------


def bodies(patches: list[canary.RolloutPatch]) -> list[tuple[str, dict[str, Any]]]:
    return [(p.subresource, p.body) for p in patches]


def test_no_action_no_patch() -> None:
    assert canary.actions(model().spec(), rollout()) == []


def test_promote_clears_the_pause_only_for_its_revision() -> None:
    assert bodies(canary.actions(model(promote="rev2").spec(), rollout())) == [
        ("status", {"status": {"pauseConditions": None}})
    ]
    assert canary.actions(model(promote="rev1").spec(), rollout()) == []
    assert canary.actions(model(promote="rev2").spec(), rollout(paused=False)) == []


def test_promote_full_is_argos_promote_full_once() -> None:
    assert bodies(canary.actions(model(promoteFull="rev2").spec(), rollout())) == [
        ("status", {"status": {"promoteFull": True}})
    ]
    done = rollout()
    done["status"]["promoteFull"] = True
    assert canary.actions(model(promoteFull="rev2").spec(), done) == []


def test_abort_is_a_level_remembered_on_the_rollout() -> None:
    patches = canary.actions(model(abort=True).spec(), rollout())
    assert [p.action for p in patches] == ["annotate", "abort"]
    assert patches[0].body == {"metadata": {"annotations": {canary.ABORTED_BY_SPEC: "bbb"}}}
    aborted = rollout(abort=True, annotations={canary.ABORTED_BY_SPEC: "bbb"})
    assert canary.actions(model(abort=True).spec(), aborted) == []
    # abort set back to false: only an abort the spec made is undone
    assert [p.action for p in canary.actions(model().spec(), aborted)] == ["unabort", "annotate"]
    assert canary.actions(model().spec(), rollout(abort=True)) == []


def test_abort_does_nothing_without_a_canary_in_flight() -> None:
    healthy = rollout(stable="bbb", current="bbb", paused=False, phase="Healthy")
    assert canary.actions(model(abort=True).spec(), healthy) == []


def test_retry_acts_once_per_value() -> None:
    aborted = rollout(abort=True)
    assert [p.action for p in canary.actions(model(retry="1").spec(), aborted)] == ["retry", "annotate"]
    retried = rollout(abort=True, annotations={canary.RETRIED: "1"})
    assert canary.actions(model(retry="1").spec(), retried) == []
    assert [p.action for p in canary.actions(model(retry="2").spec(), retried)] == ["retry", "annotate"]


# --- rollback and handover -----------------------------------------------------------------------------


def replicaset(revision: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"m-{revision}"},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"app": "x", "rollouts-pod-template-hash": "h"},
                    "annotations": {ANNOTATION_REVISION: revision},
                },
                "spec": {"containers": [{"name": "server", "image": f"old:{revision}"}]},
            }
        },
    }


def test_rollback_pins_the_kept_replicaset_template() -> None:
    plan = desired_children(model().spec(), model().ctx())
    pinned = canary.pin_template(plan, [replicaset("r1"), replicaset("r0")], "r1")
    assert not isinstance(pinned, str)
    assert pinned.revision == "r1"
    template = next(o for o in pinned.apply if o["kind"] == "Rollout")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "old:r1"
    assert "rollouts-pod-template-hash" not in template["metadata"]["labels"]
    missing = canary.pin_template(plan, [replicaset("r0")], "r9")
    assert missing == "spec.rollout.rollbackTo: no kept ReplicaSet has revision r9"


def test_switching_strategies_keeps_the_previous_workload_until_the_new_one_serves() -> None:
    plan = desired_children(model().spec(), model().ctx())
    ref = canary.previous_workload(plan)
    assert ref is not None
    assert ref.kind == "Deployment"
    old = {"status": {"replicas": 2}}
    starting = WorkloadObservation(desired_replicas=2, replicas=2, available_replicas=1)
    serving = WorkloadObservation(desired_replicas=2, replicas=2, updated_replicas=2, available_replicas=2)
    assert canary.handover_pending(None, old)
    assert canary.handover_pending(starting, old)
    assert not canary.handover_pending(serving, old)
    assert not canary.handover_pending(starting, {"status": {"replicas": 0}})
    assert ref not in canary.hold_previous(plan).delete
    back = desired_children(make_model().spec(), make_model().ctx())
    held = canary.hold_previous(back).delete
    assert {(r.kind, r.name) for r in back.delete} - {(r.kind, r.name) for r in held} == {
        ("Rollout", "m"),
        ("AnalysisTemplate", "m-gates"),
        ("AnalysisTemplate", "m-golden"),
        ("Service", "m-canary"),
        ("Service", "m-stable"),
        ("Service", "m-golden"),
    }


# --- status --------------------------------------------------------------------------------------------


def observed(state: CanaryObservation, revision: str = "rev2", available: int = 2, **extra: Any) -> Observed:
    workload = WorkloadObservation(
        2, 2, 2, available, available
    )  # desired, replicas, updated, ready, available
    return Observed(
        name="m", workload_kind="Rollout", workload=workload, revision=revision, canary=state, **extra
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_follows_the_canary_from_paused_to_promoted() -> None:
    start = {"stableRevision": "rev1", "phase": "Ready", "conditions": []}
    paused = compute_status(
        start, observed(CanaryObservation(step=1, steps=4, weight=20, paused=True)), 2, NOW
    )
    assert paused["phase"] == "Paused"
    assert (paused["canaryStep"], paused["canaryWeight"]) == (1, 20)
    assert conditions(paused)["Progressing"] == ("True", "CanaryPaused")
    moving = compute_status(paused, observed(CanaryObservation(step=2, steps=4, weight=20)), 2, NOW)
    assert moving["phase"] == "Progressing"
    assert conditions(moving)["Progressing"] == ("True", "CanaryProgressing")
    done = compute_status(moving, observed(CanaryObservation(step=4, steps=4, promoted=True)), 2, NOW)
    assert done["phase"] == "Ready"
    assert conditions(done)["Progressing"] == ("False", "CanaryPromoted")
    assert done["stableRevision"] == "rev2"
    assert done["lastKnownGoodRevision"] == "rev1"
    assert done["canaryWeight"] == 0
    assert "CanaryPromoted" in [t.reason for t in transitions(moving, done)]


def test_aborted_canary_is_degraded_naming_the_gate_and_stable_keeps_its_revision() -> None:
    start = {"stableRevision": "rev1", "lastKnownGoodRevision": "rev0", "phase": "Paused", "conditions": []}
    detail = "gate p95-latency: measured 0.71, limit 0.2 (spec.rollout.canary.analysis.maxP95LatencySeconds)"
    state = CanaryObservation(step=2, steps=4, aborted=True, failed_metric="p95-latency", failed_value="0.71",
                              detail=detail)  # fmt: skip
    status = compute_status(start, observed(state), 2, NOW)
    assert status["phase"] == "Degraded"
    assert conditions(status)["Degraded"] == ("True", "CanaryAborted")
    assert conditions(status)["Available"][0] == "True"
    assert "0.71" in status["message"]
    assert status["stableRevision"] == "rev1"
    assert status["lastKnownGoodRevision"] == "rev0"
    assert status["canary"]["failedValue"] == "0.71"
    changes = transitions(start, status)
    assert any(t.reason == "CanaryAborted" and t.warning for t in changes)


def test_handover_is_progress_and_keeps_the_canary_status() -> None:
    old = {"canary": {"phase": "Healthy", "steps": 2, "aborted": False}, "conditions": []}
    workload = WorkloadObservation(desired_replicas=2, replicas=2, updated_replicas=2, available_replicas=1)
    message = "Rollout/m keeps serving until Deployment/m is fully available"
    status = compute_status(
        old, Observed(name="m", workload=workload, revision="r", handover=message), 1, NOW
    )
    assert conditions(status)["Progressing"] == ("True", "WorkloadHandover")
    assert status["canary"] == old["canary"]
