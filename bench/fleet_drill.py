"""The failure drill of bench/fleet.py (`--drill`), on the converged fleet with its operator running.

1. The API server restarted during convergence: a batch of spec changes is made, the API server is
   stopped (its port held) for `down_s` and started again; measured: seconds until every change reached
   its workload, and whether every model still has exactly one workload (no duplicate, no orphan).
2. Nodes deleted at once (a tenth of them by default, those carrying the most pods first): measured:
   seconds until every model that had a replica on them names those nodes in `status.scheduling`, then,
   once kube-controller-manager's pod garbage collector removed the bound pods (about 40 s), whether each
   such model's `unschedulableReplicas` equals its pods the scheduler reports unschedulable.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from bench.fleet_objects import Mix
from tests.integration.controlplane import ControlPlane, apiserver_down

GROUP, VERSION, PLURAL = "serving.infergate.io", "v1alpha1", "inferencemodels"
INSTANCE = "app.kubernetes.io/instance"
Key = tuple[str, str]


def _pods(api: client.ApiClient) -> list[client.V1Pod]:
    core = client.CoreV1Api(api)
    items: list[client.V1Pod] = []
    token = None
    while True:
        page = (
            core.list_pod_for_all_namespaces(limit=500, _continue=token)
            if token
            else core.list_pod_for_all_namespaces(limit=500)
        )
        items.extend(page.items)
        token = page.metadata._continue
        if not token:
            return items


def _statuses(list_models: Callable[[], list[dict[str, Any]]]) -> dict[Key, dict[str, Any]]:
    return {(m["metadata"]["namespace"], m["metadata"]["name"]): m.get("status") or {} for m in list_models()}


def restart_during_convergence(
    plane: ControlPlane,
    api: client.ApiClient,
    mix: Mix,
    changes: int,
    down_s: float,
    change_spec: Callable[[client.ApiClient, dict[str, Any], int], None],
    workload_hash: Callable[[client.ApiClient, dict[str, Any]], str | None],
    workloads: Callable[[client.ApiClient], int],
    threads: int,
    timeout_s: float = 600,
) -> dict[str, Any]:
    bodies = [mix.model(k * mix.models // changes) for k in range(changes)]
    before = [workload_hash(api, b) for b in bodies]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda b: change_spec(api, b, 77), bodies))
    with apiserver_down(plane):
        time.sleep(down_s)
    back_s = time.perf_counter() - started
    pending = set(range(changes))
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for k in sorted(pending):
            try:
                if workload_hash(api, bodies[k]) not in (before[k], None):
                    pending.discard(k)
            except client.ApiException as error:
                if error.status not in (429, 500, 503, 504):
                    raise
        if pending:
            time.sleep(1)
    done_s = time.perf_counter() - started
    return {
        "changes": changes,
        "down_s": down_s,
        "api_back_s": back_s,
        "all_changes_in_workloads_s": done_s if not pending else None,
        "after_api_back_s": done_s - back_s if not pending else None,
        "changes_missing": len(pending),
        "workloads": workloads(api),
        "models": mix.models,
    }


def delete_nodes(
    api: client.ApiClient,
    count: int,
    list_models: Callable[[], list[dict[str, Any]]],
    threads: int,
    timeout_s: float = 300,
) -> dict[str, Any]:
    pods = _pods(api)
    per_node: collections.Counter[str] = collections.Counter(
        p.spec.node_name for p in pods if p.spec.node_name
    )
    victims = sorted(node for node, _ in per_node.most_common(count))
    doomed = set(victims)
    affected: dict[Key, set[str]] = collections.defaultdict(set)
    for p in pods:
        owner = (p.metadata.labels or {}).get(INSTANCE)
        if owner and p.spec.node_name in doomed:
            affected[(p.metadata.namespace, owner)].add(p.spec.node_name)
    core = client.CoreV1Api(api)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(core.delete_node, victims))
    deleted_s = time.perf_counter() - started

    def named(statuses: dict[Key, dict[str, Any]]) -> set[Key]:
        ok = set()
        for key, nodes in affected.items():
            lost = {
                n.get("node") for n in (statuses.get(key, {}).get("scheduling") or {}).get("lostNodes") or []
            }
            if nodes <= lost:
                ok.add(key)
        return ok

    def nodes_lost(statuses: dict[Key, dict[str, Any]]) -> int:
        return sum(
            1
            for k in affected
            for c in statuses.get(k, {}).get("conditions") or []
            if c.get("type") == "Degraded" and c.get("reason") == "NodesLost"
        )

    named_s: float | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = _statuses(list_models)
        if len(named(statuses)) == len(affected):
            named_s = time.perf_counter() - started
            break
        time.sleep(1)
    named_count, degraded_when_named = len(named(statuses)), nodes_lost(statuses)

    # After podgc: each affected model's unschedulableReplicas against its pods the scheduler refused.
    matched_s: float | None = None
    mismatched: list[str] = []
    gone_at = time.monotonic()
    while time.monotonic() < deadline:
        pods = _pods(api)
        still_bound = sum(1 for p in pods if p.spec.node_name in doomed)
        refused: collections.Counter[Key] = collections.Counter()
        for p in pods:
            owner = (p.metadata.labels or {}).get(INSTANCE)
            if owner and any(
                c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or []
            ):
                refused[(p.metadata.namespace, owner)] += 1
        reported = {k: (s.get("scheduling") or {}) for k, s in _statuses(list_models).items()}
        mismatched = [
            f"{k[0]}/{k[1]}: status {reported.get(k, {}).get('unschedulableReplicas')} vs {refused[k]} pods"
            for k in affected
            if refused[k] != reported.get(k, {}).get("unschedulableReplicas", 0)
        ]
        if still_bound == 0 and not mismatched and time.monotonic() - gone_at > 5:
            matched_s = time.perf_counter() - started
            break
        time.sleep(2)
    statuses = _statuses(list_models)
    return {
        "nodes_deleted": len(victims),
        "pods_on_them": sum(per_node[n] for n in victims),
        "models_affected": len(affected),
        "delete_s": deleted_s,
        "all_named_s": named_s,
        "models_naming_their_nodes": named_count,
        "unschedulable_counts_match_s": matched_s,
        "mismatched_examples": mismatched[:5],
        "unschedulable_replicas_reported": sum(
            (statuses.get(k, {}).get("scheduling") or {}).get("unschedulableReplicas", 0) for k in affected
        ),
        "degraded_nodes_lost_when_named": degraded_when_named,
        "degraded_nodes_lost_at_end": nodes_lost(statuses),
    }
