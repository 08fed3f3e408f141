"""compute_status: conditions by type/status/reason, transition times, phases, events; observation parsing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from infergate_operator.conditions import Reason
from infergate_operator.observed import (
    Observed,
    PodFacts,
    WorkloadObservation,
    pod_facts,
    workload_from_deployment,
)
from infergate_operator.spec import InferenceModelStatus
from infergate_operator.status import changed, compute_status, events_for, status_patch, transitions

from tests.unit.reports import failing, passing

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def ready(n: int = 2) -> WorkloadObservation:
    return WorkloadObservation(n, replicas=n, updated_replicas=n, ready_replicas=n, available_replicas=n)


BASE = Observed(name="m", revision="abc123", endpoint="http://m.ns.svc:8080", golden_configured=True)


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


SCENARIOS: list[tuple[str, Observed, str, dict[str, tuple[str, str]]]] = [
    (
        "no workload yet",
        BASE,
        "Progressing",
        {
            "Available": ("False", Reason.WORKLOAD_NOT_FOUND),
            "Progressing": ("True", Reason.NEW_REVISION_ROLLING_OUT),
            "Degraded": ("False", Reason.AS_EXPECTED),
            "ArtifactVerified": ("Unknown", Reason.ARTIFACT_NOT_YET_FETCHED),
            "GoldenPassed": ("Unknown", Reason.GOLDEN_NOT_YET_CHECKED),
        },
    ),
    (
        "rolling out",
        replace(BASE, workload=WorkloadObservation(2, replicas=3, updated_replicas=1, available_replicas=2)),
        "Progressing",
        {
            "Available": ("True", Reason.MINIMUM_REPLICAS_AVAILABLE),
            "Progressing": ("True", Reason.NEW_REVISION_ROLLING_OUT),
        },
    ),
    (
        "ready",
        passing(replace(BASE, workload=ready())),
        "Ready",
        {
            "Available": ("True", Reason.MINIMUM_REPLICAS_AVAILABLE),
            "Progressing": ("False", Reason.NEW_REVISION_AVAILABLE),
            "Degraded": ("False", Reason.AS_EXPECTED),
            "ArtifactVerified": ("True", Reason.ARTIFACT_DIGEST_VERIFIED),
            "GoldenPassed": ("True", Reason.GOLDEN_OUTPUTS_MATCHED),
        },
    ),
    (
        "no golden set",
        replace(BASE, workload=ready(), golden_configured=False),
        "Ready",
        {"GoldenPassed": ("Unknown", Reason.NO_GOLDEN_SET)},
    ),
    (
        "invalid spec",
        replace(BASE, invalid_spec=("spec.model.format: backend vllm loads hf-causal-lm, not onnx",)),
        "Failed",
        {"Degraded": ("True", Reason.INVALID_SPEC), "Progressing": ("False", Reason.INVALID_SPEC)},
    ),
    (
        "invalid spec while old children serve",
        replace(BASE, workload=ready(), invalid_spec=("spec.x: bad",)),
        "Failed",
        {"Available": ("True", Reason.MINIMUM_REPLICAS_AVAILABLE), "Degraded": ("True", Reason.INVALID_SPEC)},
    ),
    (
        "unschedulable",
        replace(
            BASE,
            workload=WorkloadObservation(2, replicas=2, updated_replicas=2),
            pods=PodFacts(unschedulable=("0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",)),
        ),
        "Degraded",
        {"Degraded": ("True", Reason.UNSCHEDULABLE), "Available": ("False", Reason.REPLICAS_UNAVAILABLE)},
    ),
    (
        "artifact digest mismatch",
        replace(
            BASE,
            workload=WorkloadObservation(1, replicas=1, updated_replicas=1),
            pods=pod_facts(
                [
                    {
                        "metadata": {"name": "m-1"},
                        "status": {
                            "initContainerStatuses": [
                                {
                                    "name": "fetch",
                                    "state": {
                                        "terminated": {
                                            "exitCode": 1,
                                            "message": "ArtifactDigestMismatch: got ab",
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ]
            ),
        ),
        "Failed",
        {
            "ArtifactVerified": ("False", Reason.ARTIFACT_DIGEST_MISMATCH),
            "Degraded": ("True", Reason.ARTIFACT_DIGEST_MISMATCH),
        },
    ),
    (
        "golden out of tolerance",
        failing(replace(BASE, workload=ready())),
        "Degraded",
        {
            "GoldenPassed": ("False", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE),
            "Degraded": ("True", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE),
        },
    ),
    (
        "field conflict",
        replace(BASE, workload=ready(), conflicts=("Deployment/m: spec.replicas is owned by kubectl",)),
        "Degraded",
        {"Degraded": ("True", Reason.FIELD_CONFLICT)},
    ),
    (
        "child rejected",
        replace(BASE, workload=ready(), rejected=("Service/m: spec.ports[0].port: Invalid value",)),
        "Degraded",
        {"Degraded": ("True", Reason.CHILD_REJECTED)},
    ),
    (
        "rollouts not installed",
        replace(BASE, workload_kind="Rollout", rollouts_missing="argoproj.io/v1alpha1 Rollout is not served"),
        "Degraded",
        {
            "Degraded": ("True", Reason.ROLLOUTS_NOT_INSTALLED),
            "Available": ("False", Reason.WORKLOAD_NOT_FOUND),
        },
    ),
    (
        "autoscaler not installed",
        replace(BASE, autoscaler_missing="spec.autoscaling.minReplicas: 0 needs KEDA (keda.sh/v1alpha1)"),
        "Degraded",
        {"Degraded": ("True", Reason.AUTOSCALER_NOT_INSTALLED)},
    ),
    (
        "scaled to zero",
        replace(BASE, workload=WorkloadObservation(0)),
        "ScaledToZero",
        {"Available": ("False", Reason.SCALED_TO_ZERO), "Degraded": ("False", Reason.AS_EXPECTED)},
    ),
    (
        "progress deadline",
        replace(
            BASE,
            workload=WorkloadObservation(
                2, replicas=3, updated_replicas=1, available_replicas=2, progress_deadline_exceeded=True
            ),
        ),
        "Degraded",
        {
            "Progressing": ("False", Reason.PROGRESS_DEADLINE_EXCEEDED),
            "Degraded": ("True", Reason.PROGRESS_DEADLINE_EXCEEDED),
        },
    ),
    (
        "a replica lost or scaling up",
        replace(
            BASE,
            workload=WorkloadObservation(
                3, replicas=3, updated_replicas=3, ready_replicas=2, available_replicas=2
            ),
        ),
        "Progressing",
        {
            "Progressing": ("True", Reason.REPLICAS_STARTING),
            "Degraded": ("False", Reason.AS_EXPECTED),
            "Available": ("True", Reason.MINIMUM_REPLICAS_AVAILABLE),
        },
    ),
    (
        "image pull",
        replace(
            BASE,
            workload=WorkloadObservation(1, replicas=1, updated_replicas=1),
            pods=pod_facts(
                [
                    {
                        "metadata": {"name": "m-1"},
                        "status": {
                            "containerStatuses": [
                                {
                                    "name": "server",
                                    "state": {
                                        "waiting": {"reason": "ImagePullBackOff", "message": "not found"}
                                    },
                                }
                            ]
                        },
                    }
                ]
            ),
        ),
        "Degraded",
        {"Degraded": ("True", Reason.IMAGE_PULL_FAILED)},
    ),
    (
        "crash loop",
        replace(
            BASE,
            workload=WorkloadObservation(1, replicas=1, updated_replicas=1),
            pods=pod_facts(
                [
                    {
                        "metadata": {"name": "m-1"},
                        "status": {
                            "containerStatuses": [
                                {"name": "server", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                            ]
                        },
                    }
                ]
            ),
        ),
        "Degraded",
        {"Degraded": ("True", Reason.CONTAINER_CRASH_LOOPING)},
    ),
    (
        "paused canary",
        replace(
            BASE,
            workload=WorkloadObservation(2, replicas=3, updated_replicas=1, available_replicas=3),
            paused=True,
        ),
        "Paused",
        {"Progressing": ("True", Reason.NEW_REVISION_ROLLING_OUT)},
    ),
]


@pytest.mark.parametrize(
    ("observed", "phase", "expected"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS]
)
def test_conditions_and_phase(observed: Observed, phase: str, expected: dict[str, tuple[str, str]]) -> None:
    old = {"stableRevision": "abc123"} if observed.workload and observed.workload.templates_updated else None
    status = compute_status(old, observed, 3, T0)
    got = conds(status)
    assert list(got) == [
        "Available", "Progressing", "Degraded", "ArtifactVerified", "GoldenPassed", "RuntimeMatchesSpec"
    ]  # fmt: skip
    for kind, value in expected.items():
        assert got[kind] == value, kind
    assert status["phase"] == phase
    assert status["message"]
    InferenceModelStatus.model_validate(status)  # the CRD's status schema accepts it


def test_replicas_still_loading_is_progress_not_degradation() -> None:
    loading = replace(
        BASE, workload=WorkloadObservation(2, replicas=2, updated_replicas=2, available_replicas=1)
    )
    status = compute_status(None, loading, 1, T0)
    assert conds(status)["Progressing"] == ("True", Reason.NEW_REVISION_ROLLING_OUT)
    assert conds(status)["Degraded"] == ("False", Reason.AS_EXPECTED)
    assert status["phase"] == "Progressing"


def test_scheduler_text_reaches_the_status_message() -> None:
    text = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
    observed = replace(BASE, workload=WorkloadObservation(1), pods=PodFacts(unschedulable=(text,)))
    assert text in compute_status(None, observed, 1, T0)["message"]


def test_invalid_spec_message_names_the_field() -> None:
    observed = replace(BASE, invalid_spec=("spec.autoscaling.minReplicas: must be ≤ maxReplicas",))
    status = compute_status(None, observed, 1, T0)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["message"].startswith("spec.autoscaling.minReplicas:")


def test_generation_stamped_everywhere() -> None:
    status = compute_status(None, replace(BASE, workload=ready()), 7, T0)
    assert status["observedGeneration"] == 7
    assert {c["observedGeneration"] for c in status["conditions"]} == {7}


def test_transition_time_moves_only_on_a_flip() -> None:
    first = compute_status(None, replace(BASE, workload=WorkloadObservation(2)), 1, T0)
    second = compute_status(first, replace(BASE, workload=ready()), 1, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["Available"] == "2026-11-25T12:05:00Z"  # False -> True
    assert times["Degraded"] == "2026-11-25T12:00:00Z"  # False -> False (reason may change)
    third = compute_status(second, replace(BASE, workload=ready()), 2, T1 + timedelta(hours=1))
    assert {c["type"]: c["lastTransitionTime"] for c in third["conditions"]} == times


def test_unchanged_world_means_no_write_and_no_events() -> None:
    observed = passing(replace(BASE, workload=ready()))
    first = compute_status(None, observed, 1, T0)
    again = compute_status(first, observed, 1, T1)
    assert not changed(first, again)
    assert transitions(first, again) == []
    assert changed(None, first)


def test_transitions_for_events() -> None:
    first = compute_status(None, passing(replace(BASE, workload=ready())), 1, T0)
    initial = transitions(None, first)
    assert [t.type for t in initial] == [
        "Available",
        "Progressing",
        "Degraded",
        "ArtifactVerified",
        "GoldenPassed",
        "RuntimeMatchesSpec",
        "Phase",
    ]
    broken = compute_status(first, failing(replace(BASE, workload=ready())), 1, T1)
    moved = {t.type: t for t in transitions(first, broken)}
    assert set(moved) == {"Degraded", "GoldenPassed", "Phase"}
    assert moved["Degraded"].event_type == "Warning"
    assert (moved["Phase"].old_status, moved["Phase"].new_status) == ("Ready", "Degraded")
    healed = compute_status(broken, passing(replace(BASE, workload=ready())), 1, T1)
    assert {t.type: t.event_type for t in transitions(broken, healed)}["Degraded"] == "Normal"


def test_events_tell_the_phase_in_the_condition_event_that_moved_it() -> None:
    first = compute_status(None, passing(replace(BASE, workload=ready())), 1, T0)
    assert [(e.type, e.reason) for e in events_for(None, first)] == [("Phase", "Ready")]
    broken = compute_status(first, failing(replace(BASE, workload=ready())), 1, T1)
    posted = events_for(first, broken)
    assert {e.type for e in posted} == {"Degraded", "GoldenPassed"}, "no Event of its own for the phase"
    carrier = [e for e in posted if "[phase Ready -> Degraded]" in e.message]
    assert len(carrier) == 1
    assert carrier[0].warning, "a bad phase rides on a Warning"
    healed = compute_status(broken, passing(replace(BASE, workload=ready())), 1, T1)
    assert sum("[phase Degraded -> Ready]" in e.message for e in events_for(broken, healed)) == 1


def test_a_phase_change_alone_is_its_own_event() -> None:
    first = compute_status(None, replace(BASE, workload=ready()), 1, T0)
    moved = {**first, "phase": "Progressing"}
    assert [(e.type, e.new_status) for e in events_for(moved, first)] == [("Phase", "Ready")]


def test_stable_revision_is_the_last_fully_rolled_out_one() -> None:
    done = compute_status(None, replace(BASE, workload=ready()), 1, T0)
    assert done["stableRevision"] == "abc123"
    rolling = replace(
        BASE,
        revision="def456",
        workload=WorkloadObservation(2, replicas=3, updated_replicas=1, available_replicas=2),
    )
    during = compute_status(done, rolling, 2, T1)
    assert (during["revision"], during["stableRevision"]) == ("def456", "abc123")


def test_status_fields_for_printer_columns() -> None:
    status = compute_status(
        None, replace(BASE, workload=WorkloadObservation(3, replicas=3, ready_replicas=2)), 1, T0
    )
    assert (status["replicas"], status["readyReplicas"], status["readySummary"]) == (3, 2, "2/3")
    assert status["endpoint"] == "http://m.ns.svc:8080"


def test_artifact_verdict_sticks_within_a_generation() -> None:
    verified = compute_status(None, passing(replace(BASE, workload=ready())), 1, T0)
    assert conds(verified)["ArtifactVerified"] == ("True", Reason.ARTIFACT_DIGEST_VERIFIED)
    no_evidence = compute_status(verified, replace(BASE, workload=ready()), 1, T1)
    assert conds(no_evidence)["ArtifactVerified"] == ("True", Reason.ARTIFACT_DIGEST_VERIFIED)
    next_generation = compute_status(verified, replace(BASE, workload=ready()), 2, T1)
    assert conds(next_generation)["ArtifactVerified"] == ("Unknown", Reason.ARTIFACT_NOT_YET_FETCHED)


def test_golden_verdict_of_the_same_revision_survives_a_restart_before_the_first_read() -> None:
    """issue 16: a restarted operator has read no server yet; rewriting GoldenPassed to "not yet checked"
    and back cost every model with pods two status writes and two Events."""
    checked = compute_status(None, passing(replace(BASE, workload=ready())), 1, T0)
    assert conds(checked)["GoldenPassed"] == ("True", Reason.GOLDEN_OUTPUTS_MATCHED)
    restarted = compute_status(checked, replace(BASE, workload=ready()), 1, T1)
    assert restarted == checked
    assert not events_for(checked, restarted)
    other_revision = compute_status(checked, replace(BASE, workload=ready(), revision="def456"), 1, T1)
    assert conds(other_revision)["GoldenPassed"] == ("Unknown", Reason.GOLDEN_NOT_YET_CHECKED)
    next_generation = compute_status(checked, replace(BASE, workload=ready()), 2, T1)
    assert conds(next_generation)["GoldenPassed"] == ("Unknown", Reason.GOLDEN_NOT_YET_CHECKED)


def test_status_patch_nulls_what_is_gone() -> None:
    assert status_patch({"golden": {"passed": 1}, "phase": "Ready"}, {"phase": "Pending"}) == {
        "golden": None,
        "phase": "Pending",
    }


# --- reading the children ---------------------------------------------------------------------------


def test_workload_from_deployment() -> None:
    deployment = {
        "metadata": {"generation": 4},
        "spec": {"replicas": 3},
        "status": {
            "observedGeneration": 4,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
        },
    }
    observed = workload_from_deployment(deployment)
    assert observed.rolled_out
    stale = workload_from_deployment({**deployment, "metadata": {"generation": 5}})
    assert not stale.rolled_out
    stuck = workload_from_deployment(
        {
            **deployment,
            "status": {
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ]
            },
        }
    )
    assert stuck.progress_deadline_exceeded


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("ArtifactDigestMismatch: got ab", Reason.ARTIFACT_DIGEST_MISMATCH),
        (
            "infergate-server: /models/model.onnx: sha256 is 00ff, expected 9f2c — refusing the artifact\n",
            Reason.ARTIFACT_DIGEST_MISMATCH,
        ),
        (
            "infergate-server: signature bundle does not verify: wrong issuer",
            Reason.SIGNATURE_VERIFICATION_FAILED,
        ),
        ("infergate-server: s3://models/m/model.onnx: HTTP 403", Reason.ARTIFACT_FETCH_FAILED),
        ("", Reason.ARTIFACT_FETCH_FAILED),
    ],
)
def test_fetch_failures_are_classified(message: str, reason: Reason) -> None:
    pod = {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [
        {"name": "fetch", "state": {"terminated": {"exitCode": 1, "message": message}}}
    ]}}  # fmt: skip
    (failure,) = pod_facts([pod]).artifact_failures
    assert failure.reason == reason


def test_credentials_in_a_fetch_message_never_reach_status() -> None:
    url = "https://alice:pa55@host/m.onnx?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"
    message = f"infergate-server: {url}: HTTP 403"
    pod = {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [
        {"name": "fetch", "state": {"terminated": {"exitCode": 1, "message": message}}}
    ]}}  # fmt: skip
    (failure,) = pod_facts([pod]).artifact_failures
    assert failure.message == "https://<redacted>@host/m.onnx?<redacted>: HTTP 403"


def _pod(name: str, annotations: dict[str, str], **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": annotations}, "status": status}


def test_pod_facts() -> None:
    current = {"serving.infergate.io/spec-hash": "new"}
    pods = [
        _pod(
            "a", current, initContainerStatuses=[{"name": "fetch", "state": {"terminated": {"exitCode": 0}}}]
        ),
        _pod(
            "b",
            current,
            initContainerStatuses=[
                {
                    "name": "fetch",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 3, "message": "SignatureVerificationFailed: bad issuer"}
                    },
                }
            ],
        ),
        _pod(
            "c",
            {"serving.infergate.io/spec-hash": "old"},
            initContainerStatuses=[
                {
                    "name": "fetch",
                    "state": {"terminated": {"exitCode": 1, "message": "ArtifactDigestMismatch: x"}},
                }
            ],
        ),
        _pod(
            "d",
            current,
            conditions=[
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes"}
            ],
        ),
        _pod(
            "e",
            current,
            initContainerStatuses=[
                {"name": "fetch", "state": {"terminated": {"exitCode": 2, "message": "403 Forbidden"}}}
            ],
        ),
    ]
    facts = pod_facts(pods, current)
    assert facts.artifact_verified == 1
    assert [(f.pod, f.reason) for f in facts.artifact_failures] == [
        ("b", Reason.SIGNATURE_VERIFICATION_FAILED),
        ("e", Reason.ARTIFACT_FETCH_FAILED),
    ]
    assert facts.unschedulable == ("0/2 nodes",)
    assert [(w.pod, w.container, w.reason) for w in facts.waiting] == [("b", "fetch", "CrashLoopBackOff")]


def test_pods_the_workload_cannot_create_degrade_the_model_with_the_reason() -> None:
    """A ReplicaSet refused its pods (here by Pod Security) shows as Degraded with the API server's words,
    not as a rollout in progress with no problems detected."""
    forbidden = (
        'pods "tiny-767c8b88d-qw7lx" is forbidden: violates PodSecurity "restricted:latest": '
        'restricted volume types (volume "node-cache" uses restricted volume type "hostPath")'
    )
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": forbidden},
            ],
        },
    }
    workload = workload_from_deployment(deployment)
    assert workload.replica_failure == forbidden
    status = compute_status(None, replace(BASE, workload=workload), 1, T0)
    assert conds(status)["Degraded"] == ("True", Reason.PODS_NOT_CREATED)
    assert status["phase"] == "Degraded"
    assert forbidden in status["message"]
    cleared = {
        **deployment,
        "status": {**deployment["status"], "conditions": deployment["status"]["conditions"][:1]},
    }
    assert workload_from_deployment(cleared).replica_failure == ""
