"""When each step from `kubectl apply` to Available was first seen, polled from the API server: where
apply -> Ready goes (the operator's reaction, scheduling, the fetch container, the server's start, its
readiness, the operator's status)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client

from tests.integration.models import Models

MODEL_LABEL = "serving.infergate.io/inferencemodel"
MILESTONES = (
    "Deployment created",
    "pod created",
    "pod scheduled",
    "fetch container running",
    "fetch container done",
    "server container running",
    "server container ready",
    "model Available",
)


def _pod_milestones(pod: client.V1Pod) -> set[str]:
    seen = {"pod created"}
    if pod.spec.node_name:
        seen.add("pod scheduled")
    for status in pod.status.init_container_statuses or []:
        if status.state.running is not None:
            seen.add("fetch container running")
        if status.state.terminated is not None:
            seen |= {"fetch container running", "fetch container done"}
    for status in pod.status.container_statuses or []:
        if status.name != "server":
            continue
        if status.state.running is not None:
            seen.add("server container running")
        if status.ready:
            seen.add("server container ready")
    return seen


def _available(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


class PodTimeline:
    """Polls every `interval_s` from start() until the model is Available or stop() is called."""

    def __init__(self, models: Models, api: client.ApiClient, name: str, interval_s: float = 0.1) -> None:
        self.models, self.name, self.interval_s = models, name, interval_s
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def start(self) -> PodTimeline:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=10)
        return {m: self.seen[m] for m in MILESTONES if m in self.seen}

    def _mark(self, milestones: set[str]) -> None:
        now = time.perf_counter() - self._started
        for milestone in milestones:
            self.seen.setdefault(milestone, now)

    def _run(self) -> None:
        selector = f"{MODEL_LABEL}={self.name}"
        namespace = self.models.namespace
        while not self._stop.is_set():
            try:
                if self.apps.list_namespaced_deployment(namespace, label_selector=selector).items:
                    self._mark({"Deployment created"})
                for pod in self.core.list_namespaced_pod(namespace, label_selector=selector).items:
                    self._mark(_pod_milestones(pod))
                if _available(self.models.get(self.name)):
                    self._mark({"model Available"})
                    return
            except client.ApiException:
                pass  # not created yet
            time.sleep(self.interval_s)
