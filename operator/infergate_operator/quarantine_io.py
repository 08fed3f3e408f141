"""The thin layer that acts on quarantine decisions: evictions, the opt-in node taint, their Node Events.

reconcile.py calls `Quarantines.observe(...)` once per observation of a model (one entry point); the pure
quarantine.py decides, this module asks the API server and reports what it answered
(quarantine_status.py turns that into status and Events). Evictions go through the Eviction API, so the
model's PodDisruptionBudget is respected: a refusal (HTTP 429) leaves the pod held and tried again at the
next check. Nothing is retried in a loop here, and no failure of this layer fails a reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from infergate_operator import metrics
from infergate_operator.golden import PodRead, PodTarget
from infergate_operator.kube import ApiError, KubeClient
from infergate_operator.quarantine import (
    FAILING,
    TAINT_REASON,
    Policy,
    plan_quarantine,
    pod_checks,
    previous_suspects,
    replacing_now,
    suspect_nodes,
    taint_string,
    with_suspect_taint,
)
from infergate_operator.quarantine_status import Eviction, QuarantineObservation, after_evictions
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import InferenceModelSpec

LOG = logging.getLogger("infergate.quarantine")
Key = tuple[str, str]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Quarantines:
    """Per operator process: evicts pods found wrong, remembers which nodes hold suspects of which models
    (this process's models only: with shards, each replica sees its own) and taints a node, when allowed,
    once pods of enough models fail there."""

    def __init__(
        self, kube: KubeClient, settings: OperatorSettings, on_change: Callable[[Key], None] | None = None
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.on_change = on_change
        self.nodes_by_model: dict[Key, tuple[str, ...]] = {}
        self.tainted: dict[str, tuple[str, ...]] = {}
        """Nodes this process tainted (or found tainted) -> the models whose pods failed there."""

    def forget(self, key: Key) -> None:
        self.nodes_by_model.pop(key, None)

    async def observe(
        self,
        key: Key,
        spec: InferenceModelSpec,
        pods: Iterable[Mapping[str, Any]],
        targets: tuple[PodTarget, ...],
        reads: Mapping[str, PodRead],
        old_status: Mapping[str, Any],
        replicas: int,
        rolled_out: bool,
    ) -> QuarantineObservation:
        """Decide, evict, taint; what was done (`off` when quarantine does not apply: no periodic golden)."""
        policy = Policy.of(spec, self.settings)
        if policy is None:
            self.forget(key)
            return QuarantineObservation(off=True)
        pods = list(pods)
        checks = pod_checks(targets, reads)
        previous = previous_suspects(old_status)
        candidates = {c.pod for c in checks if c.result in FAILING} | set(previous)
        plan = plan_quarantine(
            checks, previous, policy, replicas, replacing_now(pods, candidates), rolled_out
        )
        evictions = tuple([await self._evict(key[0], pod) for pod in plan.evict])
        observation = after_evictions(plan.suspects, evictions)
        if observation.evicted:
            observation = QuarantineObservation(observation.suspects, observation.evicted, _now())
        failing_nodes = tuple(s.node for s in (*observation.suspects, *observation.evicted) if s.node)
        if failing_nodes:
            self.nodes_by_model[key] = failing_nodes
        else:
            self.nodes_by_model.pop(key, None)
        if self.settings.quarantine_taint_nodes:
            await self._taint(key)
        model = f"{key[0]}/{key[1]}"
        mine = tuple((node, models) for node, models in sorted(self.tainted.items()) if model in models)
        return QuarantineObservation(observation.suspects, observation.evicted, observation.evicted_at, mine)

    async def _evict(self, namespace: str, pod: str) -> Eviction:
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/eviction"
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        try:
            await self.kube.request("POST", path, body=body)
        except ApiError as error:
            if error.status == 429:
                LOG.info("%s/%s: eviction refused by its PodDisruptionBudget: %s", namespace, pod, error)
                return Eviction(pod, "blocked", error.message[:300])
            if error.status == 404:
                return Eviction(pod, "gone")
            LOG.warning("%s/%s: eviction failed: %s", namespace, pod, error)
            return Eviction(pod, "failed", f"HTTP {error.status} {error.reason}")
        except (aiohttp.ClientError, TimeoutError) as error:
            return Eviction(pod, "failed", f"API server unreachable: {error!r}"[:300])
        metrics.API_WRITES.labels("create", "Eviction").inc()
        LOG.warning("%s/%s: evicted: its golden checks failed while other pods passed", namespace, pod)
        return Eviction(pod, "evicted")

    async def _taint(self, key: Key) -> None:
        wanted = suspect_nodes(self.nodes_by_model, self.settings.quarantine_taint_min_models)
        for node, models in wanted.items():
            known = self.tainted.get(node)
            if known is not None:
                merged = tuple(sorted(set(known) | set(models)))
                if merged != known:
                    self.tainted[node] = merged
                continue
            if await self._taint_node(node, models):
                self.tainted[node] = models
                for model in models:
                    namespace, name = model.split("/", 1)
                    if (namespace, name) != key and self.on_change is not None:
                        self.on_change((namespace, name))  # their status names the node too

    async def _taint_node(self, node: str, models: tuple[str, ...]) -> bool:
        """Adds the taint (optimistic concurrency on the Node's resourceVersion); True once it is on."""
        try:
            obj = await self.kube.get("v1", "Node", None, node)
            if obj is None:
                return False
            taints = with_suspect_taint((obj.get("spec") or {}).get("taints") or [])
            if taints is not None:
                patch = {
                    "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    "spec": {"taints": taints},
                }
                await self.kube.request(
                    "PATCH",
                    f"/api/v1/nodes/{quote(node)}",
                    body=patch,
                    content_type="application/merge-patch+json",
                )
                metrics.API_WRITES.labels("patch", "Node").inc()
                LOG.warning("tainted node %s %s: models %s failed golden there", node, taint_string(), models)
                await self._node_event(obj, models)
        except ApiError as error:
            LOG.warning("could not taint node %s: %s", node, error)
            return False
        except (aiohttp.ClientError, TimeoutError) as error:
            LOG.warning("could not taint node %s: %r", node, error)
            return False
        return True

    async def _node_event(self, node: Mapping[str, Any], models: tuple[str, ...]) -> None:
        meta = node["metadata"]
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": "default"},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": meta["name"],
                "uid": meta.get("uid"),
            },
            "type": "Warning",
            "reason": TAINT_REASON,
            "message": f"tainted {taint_string()}: pods of {', '.join(models)} failed golden on this node "
            "while their siblings elsewhere passed",
            "source": {"component": "infergate-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.kube.request("POST", "/api/v1/namespaces/default/events", body=event)
        except ApiError as error:
            LOG.warning("could not post the Event for node %s: %s", meta["name"], error)


__all__ = ["Quarantines"]
