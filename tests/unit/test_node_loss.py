"""Replicas lost with deleted nodes: the tracker (node_loss.py) and status.scheduling."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from infergate_operator.conditions import Reason
from infergate_operator.node_loss import NodeLosses, NodeLossObservation
from infergate_operator.observed import Observed, PodFacts, WorkloadObservation
from infergate_operator.spec import InferenceModelStatus
from infergate_operator.status import compute_status, events_for

NOW = datetime(2026, 12, 8, 1, 0, 0, tzinfo=UTC)
KEY = ("team-a", "m")
OTHER = ("team-b", "n")


def pod(name: str, node: str | None, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase},
    }


def tracker() -> NodeLosses:
    return NodeLosses(clock=lambda: NOW.timestamp())


def test_a_deleted_node_loses_the_replicas_last_seen_on_it_and_names_their_models() -> None:
    losses = tracker()
    losses.observe(KEY, [pod("m-1", "gpu-1"), pod("m-2", "gpu-2"), pod("m-3", None)])
    losses.observe(OTHER, [pod("n-1", "gpu-1")])
    assert losses.node_deleted("gpu-1") == [KEY, OTHER]
    assert losses.node_deleted("gpu-9") == []
    # podgc removed the pod; its replacement is not scheduled yet: the loss is remembered
    seen = losses.observe(KEY, [pod("m-2", "gpu-2"), pod("m-4", None)])
    assert [(r.pod, r.node, r.lost_at) for r in seen.lost] == [("m-1", "gpu-1", "2026-12-08T01:00:00Z")]
    assert seen.still_bound == 0
    losses.recovered(KEY)
    assert losses.observe(KEY, [pod("m-2", "gpu-2"), pod("m-4", "gpu-3")]).lost == ()
    assert losses.observe(OTHER, []).lost[0].node == "gpu-1"  # each model keeps its own


def test_pods_still_bound_to_a_deleted_node_count_as_lost_until_they_are_gone() -> None:
    losses = tracker()
    losses.observe(KEY, [pod("m-1", "gpu-1")])
    losses.node_deleted("gpu-1")
    seen = losses.observe(KEY, [pod("m-1", "gpu-1")])
    assert seen.still_bound == 1
    assert [r.pod for r in seen.lost] == ["m-1"]
    losses.node_added("gpu-1")  # a node of that name is back: its pods are placed again
    assert losses.observe(KEY, [pod("m-5", "gpu-1")]).still_bound == 0


def test_after_a_restart_a_pod_bound_to_a_node_the_watch_did_not_list_is_lost() -> None:
    losses = tracker()
    listed = {"gpu-2"}
    losses.node_exists = lambda node: node in listed
    seen = losses.observe(KEY, [pod("m-1", "gpu-1"), pod("m-2", "gpu-2"), pod("m-3", "gpu-1", "Succeeded")])
    assert [(r.pod, r.node) for r in seen.lost] == [("m-1", "gpu-1")]
    assert seen.still_bound == 1


def test_a_forgotten_model_is_no_longer_named_when_its_nodes_go() -> None:
    losses = tracker()
    losses.observe(KEY, [pod("m-1", "gpu-1")])
    losses.forget(KEY)
    assert losses.node_deleted("gpu-1") == []


def lost_observed(workload: WorkloadObservation, unschedulable: int, still_bound: int = 0) -> Observed:
    losses = tracker()
    losses.observe(KEY, [pod("m-1", "gpu-1"), pod("m-2", "gpu-2"), pod("m-3", "gpu-3")])
    losses.node_deleted("gpu-1")
    losses.node_deleted("gpu-2")
    text = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    return Observed(
        name="m",
        revision="abc",
        workload=workload,
        pods=PodFacts(unschedulable=(text,) * unschedulable),
        node_loss=replace(losses.observe(KEY, [pod("m-3", "gpu-3")]), still_bound=still_bound),
    )


def test_status_names_the_lost_nodes_and_the_unschedulable_replacements() -> None:
    observed = lost_observed(WorkloadObservation(3, replicas=3, available_replicas=1), unschedulable=2)
    status = compute_status(None, observed, 1, NOW)
    InferenceModelStatus.model_validate(status)  # the CRD's shape
    assert status["scheduling"] == {
        "lostNodes": [
            {"node": "gpu-1", "replicas": 1, "lostAt": "2026-12-08T01:00:00Z"},
            {"node": "gpu-2", "replicas": 1, "lostAt": "2026-12-08T01:00:00Z"},
        ],
        "lostReplicas": 2,
        "unschedulableReplicas": 2,
    }
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", Reason.NODES_LOST)
    assert degraded["message"].startswith("2 replica(s) lost with deleted node(s) gpu-1, gpu-2; 2 pod(s)")
    assert "Insufficient nvidia.com/gpu" in degraded["message"]
    assert status["phase"] == "Degraded"
    healthy = compute_status(
        None,
        Observed(
            name="m",
            revision="abc",
            workload=WorkloadObservation(3, replicas=3, updated_replicas=3, available_replicas=3),
        ),
        1,
        NOW,
    )
    told = events_for(healthy, compute_status(healthy, observed, 1, NOW))
    assert [(e.type, e.reason, e.warning) for e in told if e.type == "Degraded"] == [
        ("Degraded", Reason.NODES_LOST, True)
    ]


def test_the_loss_survives_a_restart_and_clears_once_every_replica_is_back() -> None:
    first = compute_status(
        None, lost_observed(WorkloadObservation(3, available_replicas=1), unschedulable=2), 1, NOW
    )
    # a restarted operator remembers nothing; its pods show only the replacements starting
    restarted = Observed(
        name="m",
        revision="abc",
        workload=WorkloadObservation(3, replicas=3, updated_replicas=3, available_replicas=2),
        node_loss=NodeLossObservation(),
    )
    again = compute_status(first, restarted, 1, NOW)
    assert again["scheduling"]["lostNodes"] == first["scheduling"]["lostNodes"]
    assert again["scheduling"]["unschedulableReplicas"] == 0
    degraded = next(c for c in again["conditions"] if c["type"] == "Degraded")
    assert degraded["message"].endswith("replacements scheduled, 2 of 3 replicas available")
    back = replace(
        restarted, workload=WorkloadObservation(3, replicas=3, updated_replicas=3, available_replicas=3)
    )
    done = compute_status(again, back, 1, NOW)
    assert "scheduling" not in done
    assert next(c for c in done["conditions"] if c["type"] == "Degraded")["reason"] == Reason.AS_EXPECTED


def test_pods_still_bound_keep_the_loss_open_though_the_workload_counts_them_available() -> None:
    observed = lost_observed(WorkloadObservation(3, replicas=3, available_replicas=3), 0, still_bound=2)
    status = compute_status(None, observed, 1, NOW)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["message"].endswith(
        "2 pod(s) still bound to them until the pod garbage collector removes them"
    )


def test_many_lost_nodes_are_named_up_to_five_in_the_message() -> None:
    losses = tracker()
    losses.observe(KEY, [pod(f"m-{i}", f"gpu-{i}") for i in range(8)])
    for i in range(8):
        losses.node_deleted(f"gpu-{i}")
    observed = Observed(name="m", workload=WorkloadObservation(8), node_loss=losses.observe(KEY, []))
    status = compute_status(None, observed, 1, NOW)
    assert status["scheduling"]["lostReplicas"] == 8
    assert "gpu-0, gpu-1, gpu-2, gpu-3, gpu-4 and 3 more;" in status["message"]
