"""A small typed snapshot of the children, and pure helpers that read it off API objects (dicts).

The handler fetches the workload and its pods, adds what the servers reported (golden.py), and builds an
`Observed`; status.py needs nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infergate_operator.builders.deployment import FETCH_CONTAINER
from infergate_operator.conditions import ARTIFACT_FAILURE_REASONS, Reason
from infergate_operator.golden import ArtifactObservation, GoldenObservation
from infergate_operator.node_loss import NodeLossObservation
from infergate_operator.quarantine_status import QuarantineObservation
from infergate_operator.runtime_status import RuntimeObservation
from infergate_operator.startup_status import PodStartup

WAITING_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff"})


@dataclass(frozen=True)
class WorkloadObservation:
    """Replica counts and progress of the Deployment (or Rollout)."""

    desired_replicas: int
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    current: bool = True
    """The workload controller has seen the workload's latest generation."""
    progress_deadline_exceeded: bool = False
    progress_message: str = ""
    replica_failure: str = ""
    """The workload controller's ReplicaFailure message (e.g. pods forbidden by Pod Security), or ""."""

    @property
    def templates_updated(self) -> bool:
        """Every replica runs the latest template; no old replica is left."""
        d = self.desired_replicas
        return self.current and self.updated_replicas == d and self.replicas == d

    @property
    def rolled_out(self) -> bool:
        """Every replica runs the latest template and is available."""
        return self.templates_updated and self.available_replicas >= self.desired_replicas


@dataclass(frozen=True)
class ArtifactFailure:
    pod: str
    reason: Reason
    message: str


@dataclass(frozen=True)
class Waiting:
    pod: str
    container: str
    reason: str
    message: str


@dataclass(frozen=True)
class PodFacts:
    """What the pods say: scheduling failures, artifact verification, containers stuck waiting."""

    unschedulable: tuple[str, ...] = ()
    """PodScheduled=False/Unschedulable messages (the scheduler's FailedScheduling text)."""
    artifact_verified: int = 0
    """Current-revision pods whose fetch init container finished with exit code 0."""
    artifact_failures: tuple[ArtifactFailure, ...] = ()
    waiting: tuple[Waiting, ...] = ()


@dataclass(frozen=True)
class CanaryObservation:
    """Where an Argo Rollouts canary stands (canary.py reads it off the Rollout and its AnalysisRuns)."""

    phase: str = ""
    """Argo's phase: Progressing, Paused, Healthy or Degraded."""
    message: str = ""
    step: int | None = None
    steps: int = 0
    weight: int = 0
    stable_hash: str | None = None
    canary_hash: str | None = None
    aborted: bool = False
    paused: bool = False
    promoted: bool = False
    """The newest revision is the stable one and every replica is on it."""
    failed_metric: str | None = None
    failed_value: str | None = None
    detail: str = ""
    """Why the canary was aborted, naming the gate, its measured value and the spec field."""

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"phase": self.phase, "steps": self.steps, "aborted": self.aborted}
        optional = {
            "step": self.step,
            "stableHash": self.stable_hash,
            "canaryHash": self.canary_hash,
            "failedMetric": self.failed_metric,
            "failedValue": self.failed_value,
        }
        status.update({key: value for key, value in optional.items() if value is not None})
        if self.detail or self.message:
            status["message"] = self.detail or self.message
        return status


@dataclass(frozen=True)
class Observed:
    """Everything compute_status reads. Errors are `field: message` / `Kind/name: message` strings."""

    name: str
    workload_kind: str = "Deployment"
    workload: WorkloadObservation | None = None
    pods: PodFacts = field(default_factory=PodFacts)
    invalid_spec: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    """Server-side apply conflicts: another manager owns a field we set."""
    rejected: tuple[str, ...] = ()
    """Children the API server refused (422)."""
    rollouts_missing: str = ""
    """Non-empty (the explanation) when a Canary spec meets a cluster without Argo Rollouts."""
    autoscaler_missing: str = ""
    """Non-empty (the explanation) when a spec that scales to zero meets a cluster without KEDA."""
    golden_configured: bool = False
    golden: GoldenObservation | None = None
    """Golden results read from the current revision's servers; None while none has been read."""
    artifact: ArtifactObservation | None = None
    """What those servers say they verified about the artifact; None while none has been read."""
    startup: tuple[PodStartup, ...] = ()
    """How each of those servers started (phases, node cache), as it reported."""
    runtime: RuntimeObservation | None = None
    """Runtime facts read from the current revision's servers, compared with the spec (issue 18)."""
    quarantine: QuarantineObservation | None = None
    """Pods failing golden while their siblings pass, and what was done (issue 18); None: not observed."""
    node_loss: NodeLossObservation | None = None
    """Replicas lost with deleted nodes (node_loss.py); None: pods not listed."""
    revision: str | None = None
    endpoint: str | None = None
    canary_weight: int = 0
    canary_step: int | None = None
    paused: bool = False
    provenance: Mapping[str, str] | None = None
    canary: CanaryObservation | None = None
    """Set when the workload is an Argo Rollout."""
    handover: str = ""
    """Non-empty while the previous strategy's workload keeps serving until the new one is available."""


def dig(obj: Mapping[str, Any] | None, *path: str, default: Any = None) -> Any:
    """The value at `path` in nested mappings (API objects as dicts), or `default` where it stops."""
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def replica_failure(status: Mapping[str, Any]) -> str:
    """The message of a workload's `ReplicaFailure=True` condition (Deployments and Argo Rollouts both
    set it when their ReplicaSet cannot create pods), or ""."""
    conditions: list[Mapping[str, Any]] = status.get("conditions") or []
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), {})
    if failure.get("status") != "True":
        return ""
    return str(failure.get("message") or failure.get("reason") or "ReplicaFailure")


def workload_from_deployment(deployment: Mapping[str, Any]) -> WorkloadObservation:
    """Counts and progress of an apps/v1 Deployment as the API returns it."""
    status = deployment.get("status") or {}
    generation = dig(deployment, "metadata", "generation", default=0)
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"),
        {},
    )
    return WorkloadObservation(
        desired_replicas=int(dig(deployment, "spec", "replicas", default=1)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        current=int(status.get("observedGeneration", 0)) >= int(generation),
        progress_deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        progress_message=str(progressing.get("message", "")),
        replica_failure=replica_failure(status),
    )


# A URL runs to whitespace, a quote, or a colon followed by a space (the "<uri>: detail" of messages).
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s]*@)?"
    r"(?P<rest>(?:[^\s?#'\":]|:(?!\s|$))*)(?P<query>\?(?:[^\s'\":]|:(?!\s|$))*)?"
)


def redact_urls(text: str) -> str:
    """`text` with every URL's userinfo and query string replaced: a fetch message written by an older
    server, or any tool, must not carry a presigned URL's signature or a password into status."""

    def one(m: re.Match[str]) -> str:
        user = "<redacted>@" if m["user"] else ""
        query = "?<redacted>" if m["query"] else ""
        return f"{m['scheme']}{user}{m['rest']}{query}"

    return _URL.sub(one, text)


def _artifact_failure(pod: str, terminated: Mapping[str, Any]) -> ArtifactFailure:
    """Classify a failed fetch from its termination message (the fetch's stderr, via the container's
    FallbackToLogsOnError policy): an explicit `<Reason>: detail` prefix wins, else the wording decides."""
    text = str(
        terminated.get("message") or terminated.get("reason") or f"exit code {terminated.get('exitCode')}"
    )
    text = redact_urls(text.strip().removeprefix("infergate-server: "))
    head, _, rest = text.partition(":")
    if head.strip() in ARTIFACT_FAILURE_REASONS:
        return ArtifactFailure(pod, Reason(head.strip()), rest.strip() or text)
    lowered = text.lower()
    if "signature" in lowered:
        return ArtifactFailure(pod, Reason.SIGNATURE_VERIFICATION_FAILED, text)
    if "expected" in lowered and ("sha256" in lowered or "digest" in lowered):
        return ArtifactFailure(pod, Reason.ARTIFACT_DIGEST_MISMATCH, text)
    return ArtifactFailure(pod, Reason.ARTIFACT_FETCH_FAILED, text)


def _is_current(pod: Mapping[str, Any], template_annotations: Mapping[str, str] | None) -> bool:
    if template_annotations is None:
        return True
    annotations = dig(pod, "metadata", "annotations", default={}) or {}
    return all(annotations.get(key) == value for key, value in template_annotations.items())


def pod_facts(
    pods: Iterable[Mapping[str, Any]], template_annotations: Mapping[str, str] | None = None
) -> PodFacts:
    """Facts from the workload's pods. Artifact facts count only pods whose annotations include
    `template_annotations` (the current pod template's spec/config hashes): old revisions are history."""
    unschedulable: list[str] = []
    verified = 0
    failures: list[ArtifactFailure] = []
    waiting: list[Waiting] = []
    for pod in sorted(pods, key=lambda p: str(dig(p, "metadata", "name", default=""))):
        name = str(dig(pod, "metadata", "name", default="?"))
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                unschedulable.append(str(cond.get("message", "")))
        current = _is_current(pod, template_annotations)
        for init in status.get("initContainerStatuses") or []:
            if init.get("name") != FETCH_CONTAINER or not current:
                continue
            terminated = dig(init, "state", "terminated") or dig(init, "lastState", "terminated")
            if terminated and int(terminated.get("exitCode", 1)) == 0:
                verified += 1
            elif terminated:
                failures.append(_artifact_failure(name, terminated))
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            state = dig(container, "state", "waiting") or {}
            if state.get("reason") in WAITING_REASONS:
                waiting.append(
                    Waiting(
                        name, str(container.get("name")), str(state["reason"]), str(state.get("message", ""))
                    )
                )
    return PodFacts(tuple(unschedulable), verified, tuple(failures), tuple(waiting))
