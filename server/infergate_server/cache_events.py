"""Kubernetes Events for what the node cache's sweep found: a Warning on the sweep's own Pod.

The sweep runs in a DaemonSet pod (charts/infergate/templates/node-cache-sweep.yaml); the downward API gives
it its Pod's name, namespace and uid and its node's name. The Event is about that Pod (so `kubectl describe
pod` and `kubectl get events -n <release namespace>` show it, and the only permission needed is to create
Events in its own namespace) and names the node and the entry. Posting is best effort: a failure is logged,
never fatal to the sweep (events.jsonl and the metrics hold the finding too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

REASON = "NodeCacheEntryCorrupted"
COMPONENT = "infergate-cache-sweep"
MAX_MESSAGE = 1024  # the API server refuses longer Event messages


class Reporter(Protocol):
    def corrupted(self, key: str, reason: str, now: datetime) -> None: ...


@dataclass(frozen=True)
class PodRef:
    name: str
    namespace: str
    uid: str
    node: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PodRef | None:
        """POD_NAME, POD_NAMESPACE, POD_UID and NODE_NAME (the downward API); None when any is unset."""
        values = [environ.get(k, "") for k in ("POD_NAME", "POD_NAMESPACE", "POD_UID", "NODE_NAME")]
        return cls(*values) if all(values) else None


def corruption_event(pod: PodRef, key: str, reason: str, now: datetime) -> dict[str, Any]:
    """The core/v1 Event for a corrupted entry the sweep evicted (pure)."""
    stamp = now.isoformat().replace("+00:00", "Z")
    message = f"node {pod.node}: cache entry {key} failed re-verification and was evicted: {reason}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
        },
        "reason": REASON,
        "message": message,
        "type": "Warning",
        "source": {"component": COMPONENT, "host": pod.node},
        "reportingComponent": f"infergate.io/{COMPONENT}",
        "reportingInstance": pod.node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class KubeEvents:
    """Posts the Events with the in-cluster service account (or $KUBECONFIG outside a cluster)."""

    def __init__(self, pod: PodRef) -> None:
        from kubernetes import client, config

        if "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        self._pod = pod
        self._api: Any = client.CoreV1Api()  # takes the Event as a plain dict

    def corrupted(self, key: str, reason: str, now: datetime) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        body = corruption_event(self._pod, key, reason, now)
        try:
            self._api.create_namespaced_event(self._pod.namespace, body)
        except (ApiException, HTTPError) as exc:
            log.warning("node cache sweep: could not post the Event for %s: %s", key, exc)


class NoEvents:
    """Outside a pod (no downward-API env): findings go to the log, events.jsonl and the metrics only."""

    def corrupted(self, key: str, reason: str, now: datetime) -> None:
        log.info("node cache sweep: no Kubernetes Event for %s (not running in a pod)", key)


def reporter_from_env(environ: Mapping[str, str]) -> Reporter:
    pod = PodRef.from_env(environ)
    if pod is None:
        log.info("node cache sweep: POD_NAME/POD_NAMESPACE/POD_UID/NODE_NAME unset: no Kubernetes Events")
        return NoEvents()
    return KubeEvents(pod)
