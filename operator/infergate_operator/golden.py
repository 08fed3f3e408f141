"""Golden and artifact results as the servers report them (GET /v2/models/{m}/golden): pure.

Which pods to read and at what address (`golden_targets`, `pod_address`), and what the reads say
(`observe_reports`): a `GoldenObservation` and an `ArtifactObservation` for status.py. Only what was read
counts: a pod whose server could not be read is counted as unread, never as passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infergate_operator.builders.deployment import FETCH_CONTAINER, SERVER_CONTAINER

SERVER_PORT_NAME = "http"
MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class PodTarget:
    """A current-revision pod whose server is worth reading."""

    pod: str
    address: str
    """Where its server listens, `http://<podIP>:<containerPort>`."""
    ready: bool = False
    fetched: bool = False
    """Its fetch init container finished with exit code 0 (so any configured signature was checked)."""
    node: str = ""
    """The node it runs on (spec.nodeName)."""


@dataclass(frozen=True)
class PodRead:
    """One read of one pod's golden report: the report, or why there is none."""

    pod: str
    address: str
    at: float
    """Wall-clock seconds (epoch) when the read finished."""
    report: Mapping[str, Any] | None = None
    error: str = ""


@dataclass(frozen=True)
class FailedCase:
    name: str
    result: str
    pod: str
    """The first pod (by name) where it failed."""
    pods: int = 1
    """On how many of the pods read it failed."""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    message: str = ""

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": self.name,
            "result": self.result,
            "pod": self.pod,
            "pods": self.pods,
        }
        if self.max_abs_error is not None:
            status["maxAbsError"] = self.max_abs_error
        if self.max_rel_error is not None:
            status["maxRelError"] = self.max_rel_error
        return status


@dataclass(frozen=True)
class GoldenObservation:
    """Golden results of one revision's pods, as read from their servers."""

    revision: str | None = None
    pods_read: int = 0
    """Pods whose report was read (finished golden run or not)."""
    pods_unread: int = 0
    """Pods whose server could not be read (no route, refused, timed out, bad answer)."""
    pods_checked: int = 0
    """Pods read whose server has finished a golden run."""
    passed: int = 0
    """Cases that passed on every checked pod."""
    failed: int = 0
    """Cases that failed (or errored) on at least one checked pod."""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    failed_cases: tuple[FailedCase, ...] = ()
    unread: tuple[tuple[str, str], ...] = ()
    """(pod, why) for each unread pod."""
    not_checked: tuple[tuple[str, str], ...] = ()
    """(pod, the server's phase and reason) for each pod read that has no golden results yet."""
    checked_at: str | None = None
    """When the newest of these reads finished (RFC 3339)."""

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"passed": self.passed, "failed": self.failed}
        if self.max_abs_error is not None:
            status["maxAbsError"] = self.max_abs_error
        if self.max_rel_error is not None:
            status["maxRelError"] = self.max_rel_error
        if self.checked_at is not None:
            status["checkedAt"] = self.checked_at
        if self.revision is not None:
            status["revision"] = self.revision
        status["podsRead"] = self.pods_read
        status["podsUnread"] = self.pods_unread
        if self.failed_cases:
            status["failedCases"] = [c.as_status() for c in self.failed_cases]
        return status


@dataclass(frozen=True)
class ArtifactObservation:
    """What the servers of one revision's pods say they verified about the artifact."""

    verified: tuple[tuple[str, str], ...] = ()
    """(pod, sha256) where the server checked the digest against model.sha256 before loading."""
    signature_by_fetch: tuple[str, ...] = ()
    """Pods of `verified` whose signature was configured and whose fetch init container succeeded."""
    unpinned: tuple[tuple[str, str], ...] = ()
    """(pod, sha256) where the server computed a digest with no model.sha256 to compare it with."""
    mismatches: tuple[tuple[str, str], ...] = ()
    """(pod, the server's reason) where the server refused the artifact (ArtifactDigestMismatch)."""
    pods_unread: int = 0
    unread: tuple[tuple[str, str], ...] = ()


def rfc3339_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dig(obj: Mapping[str, Any] | None, *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def pod_address(pod: Mapping[str, Any]) -> str | None:
    """`http://<podIP>:<port>` of the pod's server container (its port named `http`), from the pod
    object; None while the pod has no IP or no such port. The server speaks plain HTTP."""
    ip = _dig(pod, "status", "podIP")
    if not ip:
        return None
    containers = _dig(pod, "spec", "containers") or []
    server = next((c for c in containers if c.get("name") == SERVER_CONTAINER), None)
    ports = (server or {}).get("ports") or []
    port = next((p.get("containerPort") for p in ports if p.get("name") == SERVER_PORT_NAME), None)
    if port is None:
        return None
    host = f"[{ip}]" if ":" in str(ip) else str(ip)
    return f"http://{host}:{int(port)}"


def _current(pod: Mapping[str, Any], template_annotations: Mapping[str, str] | None) -> bool:
    if template_annotations is None:
        return True
    annotations = _dig(pod, "metadata", "annotations") or {}
    return all(annotations.get(key) == value for key, value in template_annotations.items())


def _fetched(pod: Mapping[str, Any]) -> bool:
    for init in _dig(pod, "status", "initContainerStatuses") or []:
        if init.get("name") != FETCH_CONTAINER:
            continue
        terminated = _dig(init, "state", "terminated") or _dig(init, "lastState", "terminated")
        return bool(terminated) and int(terminated.get("exitCode", 1)) == 0
    return False


def golden_targets(
    pods: Iterable[Mapping[str, Any]], template_annotations: Mapping[str, str] | None = None
) -> tuple[PodTarget, ...]:
    """Running pods of the current revision (annotations include the template's hashes) that have an
    address, by name. Old-revision and terminating pods are not read: their results are history."""
    targets = []
    for pod in pods:
        if _dig(pod, "metadata", "deletionTimestamp") or _dig(pod, "status", "phase") != "Running":
            continue
        if not _current(pod, template_annotations):
            continue
        address = pod_address(pod)
        if address is None:
            continue
        conditions = _dig(pod, "status", "conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        node = str(_dig(pod, "spec", "nodeName") or "")
        targets.append(PodTarget(str(_dig(pod, "metadata", "name")), address, ready, _fetched(pod), node))
    return tuple(sorted(targets, key=lambda t: t.pod))


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def report_key(read: PodRead) -> tuple[Any, ...]:
    """What of a read can change status (not timings or error magnitudes): a new key means a refresh."""
    if read.report is None:
        return (read.pod, read.address, "unread", read.error)
    r = read.report
    cases = tuple(sorted((str(c.get("name")), str(c.get("result"))) for c in r.get("cases") or []))
    artifact = r.get("artifact") or {}
    facts = (artifact.get("sha256"), artifact.get("sha256Verified"), artifact.get("signatureConfigured"))
    runtime = r.get("runtime")
    ran = tuple(sorted((str(k), str(v)) for k, v in runtime.items())) if isinstance(runtime, dict) else ()
    # A failing run is counted per run (quarantine.py): each new one is a change; passing runs are not.
    failing_run = r.get("checkedAt") if r.get("result") not in (None, "Passed") else None
    return (read.pod, read.address, r.get("phase"), r.get("ready"), r.get("reason"), cases, facts, ran,
            failing_run)  # fmt: skip


def _reads_of(targets: Iterable[PodTarget], reads: Mapping[str, PodRead]) -> list[tuple[PodTarget, PodRead]]:
    """The read of each target, where one was made at the target's current address."""
    pairs = []
    for target in targets:
        read = reads.get(target.pod)
        if read is not None and read.address == target.address:
            pairs.append((target, read))
    return pairs


def _golden(pairs: list[tuple[PodTarget, PodRead]], revision: str | None) -> GoldenObservation:
    unread = tuple((t.pod, r.error or "no answer") for t, r in pairs if r.report is None)
    checked: list[tuple[str, list[Mapping[str, Any]]]] = []
    not_checked: list[tuple[str, str]] = []
    for target, read in pairs:
        if read.report is None:
            continue
        cases = read.report.get("cases")
        if isinstance(cases, list) and cases:
            checked.append((target.pod, [c for c in cases if isinstance(c, Mapping)]))
        else:
            phase, reason = read.report.get("phase", "?"), str(read.report.get("reason", ""))
            not_checked.append((target.pod, f"{phase}: {reason}"[:MESSAGE_LIMIT]))
    by_case: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for pod, cases in checked:
        for case in cases:
            by_case.setdefault(str(case.get("name")), []).append((pod, case))
    failed: list[FailedCase] = []
    passed = 0
    for name in sorted(by_case):
        results = by_case[name]
        bad = [(pod, c) for pod, c in results if not c.get("passed")]
        if not bad:
            passed += 1
            continue
        pod, first = bad[0]
        failed.append(
            FailedCase(
                name=name,
                result=str(first.get("result", "Failed")),
                pod=pod,
                pods=len(bad),
                max_abs_error=_max(_float(c.get("maxAbsError")) for _, c in bad),
                max_rel_error=_max(_float(c.get("maxRelError")) for _, c in bad),
                message=str(first.get("message", ""))[:MESSAGE_LIMIT],
            )
        )
    every_case = [c for _, cases in checked for c in cases]
    stamps = [r.at for _, r in pairs if r.report is not None]
    return GoldenObservation(
        revision=revision,
        pods_read=len(pairs) - len(unread),
        pods_unread=len(unread),
        pods_checked=len(checked),
        passed=passed,
        failed=len(failed),
        max_abs_error=_max(_float(c.get("maxAbsError")) for c in every_case),
        max_rel_error=_max(_float(c.get("maxRelError")) for c in every_case),
        failed_cases=tuple(failed),
        unread=unread,
        not_checked=tuple(not_checked),
        checked_at=rfc3339_epoch(max(stamps)) if stamps else None,
    )


def _artifact(pairs: list[tuple[PodTarget, PodRead]]) -> ArtifactObservation:
    verified, unpinned, mismatches, by_fetch = [], [], [], []
    unread = tuple((t.pod, r.error or "no answer") for t, r in pairs if r.report is None)
    for target, read in pairs:
        if read.report is None:
            continue
        facts = read.report.get("artifact") or {}
        digest = facts.get("sha256")
        reason = str(read.report.get("reason", ""))
        if reason.startswith("ArtifactDigestMismatch"):
            mismatches.append((target.pod, reason[:MESSAGE_LIMIT]))
        elif digest and facts.get("sha256Verified") is True:
            verified.append((target.pod, str(digest)))
            if facts.get("signatureConfigured") and target.fetched:
                by_fetch.append(target.pod)
        elif digest:
            unpinned.append((target.pod, str(digest)))
    return ArtifactObservation(
        verified=tuple(verified),
        signature_by_fetch=tuple(by_fetch),
        unpinned=tuple(unpinned),
        mismatches=tuple(mismatches),
        pods_unread=len(unread),
        unread=unread,
    )


def observe_reports(
    targets: Iterable[PodTarget], reads: Mapping[str, PodRead], revision: str | None
) -> tuple[GoldenObservation | None, ArtifactObservation | None]:
    """What the reads of the current targets say; (None, None) while none of them has been read."""
    pairs = _reads_of(targets, reads)
    if not pairs:
        return None, None
    return _golden(pairs, revision), _artifact(pairs)


__all__ = [
    "ArtifactObservation",
    "FailedCase",
    "GoldenObservation",
    "PodRead",
    "PodTarget",
    "golden_targets",
    "observe_reports",
    "pod_address",
    "report_key",
]
