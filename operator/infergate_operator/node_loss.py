"""Replicas lost with their nodes: which of a model's pods ran on a node that was deleted.

A deleted node's pods stay bound to it until the pod garbage collector removes them (kube-controller-
manager's podgc, about 40 s later); their replacements then show only as new pods, Pending when nothing
else can take them. Once the old pods are gone nothing in the API says where the lost replicas were, so
the operator remembers, per model, the node of each pod it listed (its refreshes list them anyway) and
learns of deletions from a metadata-only watch of Nodes (handlers.py). Memory: one (pod, node) pair per
running replica of the models this replica works on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Key = tuple[str, str]
# Deleted node names kept so that a pod still bound to one is recognised (podgc removes those pods
# within a minute); beyond this many the oldest are dropped.
GONE_NODES_KEPT = 4096


@dataclass(frozen=True)
class LostReplica:
    pod: str
    node: str
    lost_at: str
    """RFC 3339: when the operator saw the node deleted (or, after a restart, its pod bound to no node)."""


@dataclass(frozen=True)
class NodeLossObservation:
    """What a refresh saw of node loss for one model."""

    lost: tuple[LostReplica, ...] = ()
    """Replicas lost with their nodes since the model last had every replica available."""
    still_bound: int = 0
    """Pods listed now that are still bound to a deleted node (podgc has not removed them yet)."""


def _rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeLosses:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._placed: dict[Key, dict[str, str]] = {}  # model -> {pod: node}
        self._on_node: dict[str, set[Key]] = {}  # node -> models with pods on it
        self._lost: dict[Key, dict[str, LostReplica]] = {}  # model -> {pod: lost replica}
        self._gone: dict[str, str] = {}  # deleted node -> when (RFC 3339), oldest first
        # Whether a node exists as the Node watch last listed it; None before its first listing.
        self.node_exists: Callable[[str], bool | None] = lambda _node: None

    def node_deleted(self, node: str) -> list[Key]:
        """`node` was deleted: the replicas last seen on it are lost. Returns the models they belong to."""
        at = _rfc3339(self._clock())
        self._gone.pop(node, None)
        self._gone[node] = at
        while len(self._gone) > GONE_NODES_KEPT:
            del self._gone[next(iter(self._gone))]
        models = sorted(self._on_node.pop(node, set()))
        for key in models:
            placed = self._placed.get(key, {})
            for pod in [p for p, n in placed.items() if n == node]:
                del placed[pod]
                self._lost.setdefault(key, {})[pod] = LostReplica(pod, node, at)
        return models

    def node_added(self, node: str) -> None:
        """A node of that name exists (again): pods bound to it are no longer taken for lost."""
        self._gone.pop(node, None)

    def observe(self, key: Key, pods: Iterable[Mapping[str, Any]]) -> NodeLossObservation:
        """Record where the model's pods run now; a pod bound to a deleted node counts as lost."""
        placed: dict[str, str] = {}
        still_bound = 0
        for pod in pods:
            spec, status, meta = pod.get("spec") or {}, pod.get("status") or {}, pod.get("metadata") or {}
            node, name = str(spec.get("nodeName") or ""), str(meta.get("name") or "")
            if not node or not name or status.get("phase") in ("Succeeded", "Failed"):
                continue
            gone_at = self._gone.get(node)
            if gone_at is None and self.node_exists(node) is False:  # deleted while we were not watching
                gone_at = _rfc3339(self._clock())
            if gone_at is None:
                placed[name] = node
                continue
            still_bound += 1
            lost = self._lost.setdefault(key, {})
            if name not in lost:
                lost[name] = LostReplica(name, node, gone_at)
        self._place(key, placed)
        lost_now = tuple(sorted(self._lost.get(key, {}).values(), key=lambda r: (r.node, r.pod)))
        return NodeLossObservation(lost_now, still_bound)

    def recovered(self, key: Key) -> None:
        """Every replica of the model is available again: its losses are history."""
        self._lost.pop(key, None)

    def forget(self, key: Key) -> None:
        """The model is gone (or no longer ours)."""
        self._place(key, {})
        self._lost.pop(key, None)

    def _place(self, key: Key, placed: dict[str, str]) -> None:
        before = self._placed.pop(key, {})
        for node in set(before.values()) - set(placed.values()):
            models = self._on_node.get(node)
            if models is not None:
                models.discard(key)
                if not models:
                    del self._on_node[node]
        for node in set(placed.values()):
            self._on_node.setdefault(node, set()).add(key)
        if placed:
            self._placed[key] = placed
