"""Quarantine decisions (issue 18): which pods are suspect, how runs are counted, which to replace now,
the replacement cap, the node taint, and what status and Events say. All pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from infergate_operator.builders.configmap import CONFIG_KEY, build_configmap
from infergate_operator.context import ANNOTATION_DEBUG_PERTURB, make_context
from infergate_operator.golden import PodRead, PodTarget, report_key
from infergate_operator.observed import Observed, WorkloadObservation
from infergate_operator.quarantine import (
    PodCheck,
    Policy,
    Suspect,
    plan_quarantine,
    pod_checks,
    previous_suspects,
    replacing_now,
    run_stamp,
    suspect_nodes,
    with_suspect_taint,
)
from infergate_operator.quarantine_status import (
    Eviction,
    QuarantineObservation,
    after_evictions,
    quarantine_events,
    quarantine_status,
)
from infergate_operator.settings import OperatorSettings
from infergate_operator.status import compute_status
from infergate_operator.validation import check_spec

from tests.unit.igm import make_model

T0 = 1_800_000_000.0
POLICY = Policy(replace_after=3, max_replacing_percent=50)
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def failed(pod: str, at: float, node: str = "n1", case: str = "two-rows") -> PodCheck:
    return PodCheck(pod, node, "Failed", at, case)


def passed(pod: str, at: float = T0, node: str = "n2") -> PodCheck:
    return PodCheck(pod, node, "Passed", at)


def suspect(pod: str, count: int, at: float = T0, node: str = "n1") -> Suspect:
    return Suspect(pod, node, count, "two-rows", "Failed", run_stamp(at))


def plan(checks: list[PodCheck], previous: dict[str, Suspect] | None = None, **kw: Any) -> Any:
    args = {"policy": POLICY, "replicas": 4, "replacing": 0, **kw}
    return plan_quarantine(checks, previous or {}, args["policy"], args["replicas"], args["replacing"],
                           args.get("rolled_out", True))  # fmt: skip


# --- suspects and counting ------------------------------------------------------------------------


def test_a_pod_failing_while_a_sibling_passes_is_suspect() -> None:
    result = plan([failed("a", T0), passed("b")])
    (s,) = result.suspects
    assert (s.pod, s.node, s.failed_checks, s.case) == ("a", "n1", 1, "two-rows")
    assert result.evict == ()
    assert s.held == "1 of 3 failed checks before it is replaced"


def test_each_failed_run_counts_once_however_often_it_is_read() -> None:
    first = plan([failed("a", T0), passed("b")]).suspects
    again = plan([failed("a", T0), passed("b")], {s.pod: s for s in first}).suspects
    assert again[0].failed_checks == 1
    later = plan([failed("a", T0 + 60), passed("b")], {s.pod: s for s in again}).suspects
    assert later[0].failed_checks == 2


def test_every_pod_failing_is_the_revision_not_a_pod() -> None:
    assert plan([failed("a", T0), failed("b", T0, node="n2")]).suspects == ()


def test_a_pod_that_passes_again_starts_from_zero() -> None:
    assert plan([passed("a", T0 + 60, node="n1"), passed("b")], {"a": suspect("a", 2)}).suspects == ()


@pytest.mark.parametrize(
    "checks",
    [
        [PodCheck("a", "n1"), passed("b")],  # unread this time
        [failed("a", T0 + 60), failed("b", T0 + 60, node="n2")],  # no sibling passes now
    ],
)
def test_an_unread_or_unconfirmed_pod_keeps_its_count(checks: list[PodCheck]) -> None:
    (s,) = plan(checks, {"a": suspect("a", 2)}).suspects
    assert s.failed_checks == 2


def test_a_pod_gone_drops_out() -> None:
    assert plan([passed("b")], {"a": suspect("a", 2)}).suspects == ()


def test_errored_counts_inconclusive_does_not() -> None:
    errored = PodCheck("a", "n1", "Errored", T0, "two-rows")
    assert plan([errored, passed("b")]).suspects[0].result == "Errored"
    assert plan([PodCheck("a", "n1", "Inconclusive", T0), passed("b")]).suspects == ()


# --- replacement and the cap ----------------------------------------------------------------------


def test_a_pod_is_replaced_on_its_nth_failed_run() -> None:
    result = plan([failed("a", T0 + 120), passed("b")], {"a": suspect("a", 2, T0 + 60)})
    assert result.evict == ("a",)
    assert result.suspects[0].failed_checks == 3
    assert result.suspects[0].due


@pytest.mark.parametrize(
    ("replicas", "percent", "replacing", "rolled_out", "evicted"),
    [
        (4, 50, 0, True, ("c", "a")),  # 2 of 4 at once; most failed runs first, then by name
        (4, 50, 1, True, ("c",)),  # one replacement already starting
        (4, 50, 2, True, ()),
        (4, 100, 0, True, ("c", "a", "b")),
        (2, 50, 0, True, ("c",)),
        (3, 25, 0, True, ()),  # under one replica allowed: none
        (4, 50, 0, False, ()),  # a rollout is replacing pods already
    ],
)
def test_never_more_than_the_fraction_at_once(
    replicas: int, percent: int, replacing: int, rolled_out: bool, evicted: tuple[str, ...]
) -> None:
    previous = {"a": suspect("a", 3), "b": suspect("b", 3), "c": suspect("c", 5)}
    checks = [failed(p, T0 + 60) for p in ("a", "b", "c")] + [passed("d")]
    policy = Policy(replace_after=3, max_replacing_percent=percent)
    result = plan(
        checks, previous, policy=policy, replicas=replicas, replacing=replacing, rolled_out=rolled_out
    )
    assert result.evict == evicted
    held = {s.pod: s.held for s in result.suspects if s.pod not in evicted}
    assert all(held.values()), held
    if rolled_out and held:
        assert all(f"maxReplacingPercent {percent}" in text for text in held.values()), held
    assert all(s.due for s in result.suspects)


def test_zero_failed_checks_records_and_never_replaces() -> None:
    result = plan([failed("a", T0 + 60), passed("b")], {"a": suspect("a", 9)}, policy=Policy(0, 100))
    assert result.evict == ()
    assert "recorded, never replaced" in result.suspects[0].held
    assert result.suspects[0].as_status()["state"] == "Held"


def pod(name: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2027-01-15T12:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


def test_replacing_counts_terminating_and_unready_pods_but_not_suspects() -> None:
    pods = [pod("a", False), pod("b", True), pod("c", False), pod("d", True, deleting=True)]
    assert replacing_now(pods, {"a"}) == 2


def test_policy_spec_over_operator_defaults() -> None:
    settings = OperatorSettings(quarantine_failed_checks=5, quarantine_max_replacing_percent=20)
    model = make_model().golden_tensor()
    assert Policy.of(model.spec(), settings) == Policy(5, 20)
    model.patch({"quarantine": {"replaceAfterFailedChecks": 2}})
    assert Policy.of(model.spec(), settings) == Policy(2, 20)
    assert Policy.of(make_model().spec(), settings) is None  # no golden set
    assert (
        Policy.of(make_model().golden_tensor().patch({"golden": {"periodSeconds": 0}}).spec(), settings)
        is None
    )


def test_quarantine_without_periodic_golden_names_the_field() -> None:
    errors = check_spec(make_model().patch({"quarantine": {"replaceAfterFailedChecks": 2}}).raw).errors
    assert any(e.startswith("spec.quarantine") for e in errors), errors
    errors = check_spec(
        make_model().golden_tensor().patch({"quarantine": {"maxReplacingPercent": 0}}).raw
    ).errors
    assert any(e.startswith("spec.quarantine.maxReplacingPercent") for e in errors), errors


# --- reading the servers' reports -----------------------------------------------------------------


def report(result: str, at: float, case_passed: bool) -> dict[str, Any]:
    case = {"name": "two-rows", "result": result, "passed": case_passed}
    return {"phase": "Ready", "ready": case_passed, "result": result, "checkedAt": at, "cases": [case]}


def test_pod_checks_from_reads() -> None:
    targets = (
        PodTarget("a", "http://10.0.0.1:8080", node="n1"),
        PodTarget("b", "http://10.0.0.2:8080", node="n2"),
        PodTarget("c", "http://10.0.0.3:8080", node="n3"),
    )
    reads = {
        "a": PodRead("a", "http://10.0.0.1:8080", T0, report("Failed", T0, False)),
        "b": PodRead("b", "http://10.0.0.2:8080", T0, report("Passed", T0, True)),
        "c": PodRead("c", "http://10.0.0.9:8080", T0, report("Passed", T0, True)),  # an old address
    }
    checks = pod_checks(targets, reads)
    assert checks == (
        PodCheck("a", "n1", "Failed", T0, "two-rows"),
        PodCheck("b", "n2", "Passed", T0, ""),
        PodCheck("c", "n3"),
    )


def test_a_new_failed_run_is_a_change_a_new_passed_run_is_not() -> None:
    def key(result: str, at: float, ok: bool) -> Any:
        return report_key(PodRead("a", "http://x:1", at, report(result, at, ok)))

    assert key("Failed", T0, False) != key("Failed", T0 + 60, False)
    assert key("Passed", T0, True) == key("Passed", T0 + 60, True)


# --- the node taint -------------------------------------------------------------------------------


def test_a_node_is_suspect_once_pods_of_enough_models_fail_there() -> None:
    by_model = {("ns", "a"): ("n1", "n1"), ("ns", "b"): ("n1", "n2"), ("other", "c"): ("n3",)}
    assert suspect_nodes(by_model, 2) == {"n1": ("ns/a", "ns/b")}
    assert suspect_nodes(by_model, 3) == {}
    assert suspect_nodes({("ns", "a"): ("n1",)}, 2) == {}


def test_the_taint_is_added_once() -> None:
    taints = with_suspect_taint([{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
    assert taints is not None
    assert taints[-1] == {"key": "infergate.io/suspect", "value": "GoldenFailedOnSeveralModels",
                          "effect": "NoSchedule"}  # fmt: skip
    assert with_suspect_taint(taints) is None


# --- status and Events ----------------------------------------------------------------------------


def test_status_and_events_name_the_pod_through_its_replacement() -> None:
    counting = plan([failed("a", T0), passed("b")])
    first = quarantine_status(None, after_evictions(counting.suspects, ()))
    assert first == {"pods": [counting.suspects[0].as_status()]}
    (event,) = quarantine_events(None, first, "rev1")
    assert event.reason == "ReplicaGoldenFailed"
    assert "pod a on node n1" in event.message
    assert "two-rows" in event.message
    assert "rev1" in event.message

    previous = previous_suspects({"quarantine": first})
    assert previous == {"a": counting.suspects[0]}
    due = plan([failed("a", T0 + 120), passed("b")], {"a": suspect("a", 2, T0 + 60)})
    observation = after_evictions(due.suspects, (Eviction("a", "evicted"),))
    observation = QuarantineObservation(observation.suspects, observation.evicted, "2027-01-15T12:00:00Z")
    second = quarantine_status(first, observation)
    assert second == {
        "replaced": [{"pod": "a", "node": "n1", "failedChecks": 3, "case": "two-rows",
                      "replacedAt": "2027-01-15T12:00:00Z"}]
    }  # fmt: skip
    (event,) = quarantine_events(first, second, "rev1")
    assert event.reason == "ReplicaReplaced"
    assert "evicted pod a on node n1 after 3 failed golden check(s)" in event.message
    assert quarantine_events(second, second, "rev1") == []


def test_a_refused_eviction_is_held_not_replaced() -> None:
    due = plan([failed("a", T0 + 120), passed("b")], {"a": suspect("a", 2, T0 + 60)})
    observation = after_evictions(due.suspects, (Eviction("a", "blocked", "Cannot evict pod"),))
    status = quarantine_status(None, observation)
    assert status is not None
    assert "replaced" not in status
    (entry,) = status["pods"]
    assert entry["state"] == "Held"
    assert "PodDisruptionBudget" in entry["held"]
    reasons = [e.reason for e in quarantine_events(None, status, "rev1")]
    assert reasons == ["ReplicaGoldenFailed", "ReplacementHeld"]


def test_a_tainted_node_is_in_status_and_an_event() -> None:
    observation = QuarantineObservation(nodes=(("n1", ("ns/a", "ns/b")),))
    status = quarantine_status(None, observation)
    taint = "infergate.io/suspect=GoldenFailedOnSeveralModels:NoSchedule"
    assert status == {"nodes": [{"node": "n1", "taint": taint, "models": ["ns/a", "ns/b"]}]}
    (event,) = quarantine_events(None, status, "rev1")
    assert event.reason == "NodeTainted"
    assert "node n1" in event.message


def test_compute_status_writes_keeps_and_drops_quarantine() -> None:
    workload = WorkloadObservation(desired_replicas=2, replicas=2, updated_replicas=2, ready_replicas=1,
                                   available_replicas=1)  # fmt: skip
    suspects = plan([failed("a", T0), passed("b")]).suspects
    observed = Observed(name="m", workload=workload, quarantine=QuarantineObservation(suspects))
    status = compute_status(None, observed, 1, NOW)
    assert status["quarantine"]["pods"][0]["pod"] == "a"
    kept = compute_status(status, Observed(name="m", invalid_spec=("spec.x: bad",)), 2, NOW)
    assert kept["quarantine"] == status["quarantine"]
    off = Observed(name="m", workload=workload, quarantine=QuarantineObservation(off=True))
    assert "quarantine" not in compute_status(status, off, 1, NOW)


# --- the debug switch reaches the server only when the operator allows it ---------------------------


@pytest.mark.parametrize(("allowed", "rendered"), [(False, None), (True, {"perturbOutputsAfterCalls": 7})])
def test_debug_annotation_only_with_the_operator_setting(
    allowed: bool, rendered: dict[str, int] | None
) -> None:
    model = make_model().golden_tensor()
    meta = {**model.obj()["metadata"], "annotations": {ANNOTATION_DEBUG_PERTURB: "7"}}
    ctx = make_context(meta, model.spec(), OperatorSettings(debug_fault_injection=allowed))
    config = yaml.safe_load(build_configmap(model.spec(), ctx)["data"][CONFIG_KEY])
    assert config.get("debug") == rendered
