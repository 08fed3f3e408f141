"""status.scheduling and its Degraded message: replicas lost with deleted nodes, and what became of their
replacements. Pure.

A loss is kept in status (so an operator restarted after the pods were garbage-collected still says where
the replicas were) until every wanted replica is available again and no pod is left bound to a deleted node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate_operator.conditions import Message
from infergate_operator.observed import Observed

NODES_NAMED = 5
"""Nodes named in the condition message; status.scheduling.lostNodes lists up to NODES_KEPT."""
NODES_KEPT = 100


def restored(observed: Observed) -> bool:
    """Every wanted replica available, none unschedulable, none still bound to a deleted node."""
    w, loss = observed.workload, observed.node_loss
    return (
        w is not None
        and w.available_replicas >= w.desired_replicas
        and not observed.pods.unschedulable
        and (loss is None or loss.still_bound == 0)
    )


def scheduling_status(old: Mapping[str, Any] | None, observed: Observed) -> dict[str, Any] | None:
    """{lostNodes: [{node, replicas, lostAt}], lostReplicas, unschedulableReplicas}, or None when no loss
    is outstanding."""
    if restored(observed):
        return None
    nodes: dict[str, dict[str, Any]] = {}
    for entry in (old or {}).get("lostNodes") or []:
        if isinstance(entry, Mapping) and entry.get("node"):
            nodes[str(entry["node"])] = {
                "node": str(entry["node"]),
                "replicas": int(entry.get("replicas", 0)),
                "lostAt": str(entry.get("lostAt", "")),
            }
    seen: dict[str, list[str]] = {}
    for replica in observed.node_loss.lost if observed.node_loss else ():
        seen.setdefault(replica.node, []).append(replica.lost_at)
    for node, times in seen.items():
        before = nodes.get(node)
        nodes[node] = {
            "node": node,
            "replicas": max(len(times), before["replicas"] if before else 0),
            "lostAt": before["lostAt"] if before and before["lostAt"] else min(times),
        }
    if not nodes:
        return None
    ordered = sorted(nodes.values(), key=lambda n: (n["lostAt"], n["node"]))
    return {
        "lostNodes": ordered[:NODES_KEPT],
        "lostReplicas": sum(n["replicas"] for n in ordered),
        "unschedulableReplicas": len(observed.pods.unschedulable),
    }


def nodes_lost_message(scheduling: Mapping[str, Any], observed: Observed) -> str:
    nodes = [str(n["node"]) for n in scheduling["lostNodes"]]
    named = ", ".join(nodes[:NODES_NAMED])
    more = len(nodes) - NODES_NAMED
    if more > 0:
        named += f" and {more} more"
    unschedulable = observed.pods.unschedulable
    loss, w = observed.node_loss, observed.workload
    if unschedulable:
        after = Message.UNSCHEDULABLE.format(pods=len(unschedulable), detail=unschedulable[0])
    elif loss is not None and loss.still_bound:
        after = Message.PODS_STILL_BOUND.format(pods=loss.still_bound)
    else:
        available, desired = (w.available_replicas, w.desired_replicas) if w else (0, 0)
        after = Message.REPLACEMENTS_STARTING.format(available=available, desired=desired)
    return Message.NODES_LOST.format(replicas=scheduling["lostReplicas"], nodes=named, after=after)
