"""Quarantine of a replica that goes wrong (issue 18): which pods are suspect, which to replace now. Pure.

A pod is suspect when its latest periodic golden run failed (Failed or Errored) while another pod of the
same revision passed its latest run: the fault is the pod's (its GPU, its node, its memory), not the
revision's, which GoldenPassed and the canary gates already cover. Each failed run counts once (runs are
told apart by the server's `checkedAt`), so reading a pod twice between runs never counts twice. After
`replace_after` failed runs in a row the pod is due for replacement; at most `max_replacing_percent` of the
replicas (rounded down) may be being replaced at once, counting every pod terminating or not yet Ready.
Nothing here reads a clock or the API: reconcile.py gathers the facts, quarantine_io.py acts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from infergate_operator.golden import PodRead, PodTarget
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import InferenceModelSpec

FAILING = frozenset({"Failed", "Errored"})
TAINT_KEY = "infergate.io/suspect"
TAINT_REASON = "GoldenFailedOnSeveralModels"
TAINT_EFFECT = "NoSchedule"


@dataclass(frozen=True)
class Policy:
    replace_after: int
    """Failed runs in a row before a pod is replaced; 0 never replaces (records only)."""
    max_replacing_percent: int
    """Percent of replicas (rounded down) that may be being replaced at once."""

    @classmethod
    def of(cls, spec: InferenceModelSpec, settings: OperatorSettings) -> Policy | None:
        """The model's policy: spec.quarantine over the operator's defaults; None without periodic golden."""
        if spec.golden is None or spec.golden.period_seconds <= 0:
            return None
        q = spec.quarantine
        after = q.replace_after_failed_checks if q is not None else None
        percent = q.max_replacing_percent if q is not None else None
        return cls(
            after if after is not None else settings.quarantine_failed_checks,
            percent if percent is not None else settings.quarantine_max_replacing_percent,
        )

    def allowed(self, replicas: int) -> int:
        """Pods that may be being replaced at once, of `replicas`."""
        return math.floor(replicas * self.max_replacing_percent / 100 + 1e-9)


@dataclass(frozen=True)
class PodCheck:
    """One current-revision pod's latest golden run, as its server reported it."""

    pod: str
    node: str = ""
    result: str = ""
    """Passed, Failed, Errored, Inconclusive; empty while unread or before its first run."""
    checked_at: float | None = None
    """The server's time of that run (epoch seconds): what tells two runs apart."""
    case: str = ""
    """The first case that did not pass."""


@dataclass(frozen=True)
class Suspect:
    pod: str
    node: str
    failed_checks: int
    case: str
    result: str
    last_failed_at: str
    """RFC 3339 (milliseconds) of the latest failed run counted."""
    held: str = ""
    due: bool = False
    """It reached the count: replaced unless held."""

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "pod": self.pod,
            "node": self.node,
            "failedChecks": self.failed_checks,
            "case": self.case,
            "result": self.result,
            "lastFailedAt": self.last_failed_at,
            "state": "Held" if self.due else "Counting",
        }
        if self.held:
            status["held"] = self.held
        return status


@dataclass(frozen=True)
class QuarantinePlan:
    suspects: tuple[Suspect, ...] = ()
    evict: tuple[str, ...] = ()
    """Pods to evict now, most failed runs first."""


def run_stamp(checked_at: float) -> str:
    """A run's time as status keeps it, to the millisecond (two runs are never that close)."""
    return datetime.fromtimestamp(checked_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def pod_checks(targets: Iterable[PodTarget], reads: Mapping[str, PodRead]) -> tuple[PodCheck, ...]:
    """Each target's latest run from its read (made at its current address); empty result when none."""
    checks = []
    for target in targets:
        read = reads.get(target.pod)
        report = read.report if read is not None and read.address == target.address else None
        if report is None:
            checks.append(PodCheck(target.pod, target.node))
            continue
        cases = [c for c in report.get("cases") or [] if isinstance(c, Mapping)]
        stamp = report.get("checkedAt")
        result = str(report.get("result") or "") if cases else ""
        bad = next((str(c.get("name")) for c in cases if not c.get("passed")), "")
        checked_at = float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else None
        checks.append(PodCheck(target.pod, target.node, result, checked_at, bad))
    return tuple(checks)


def previous_suspects(old_status: Mapping[str, Any] | None) -> dict[str, Suspect]:
    """The suspects status.quarantine recorded (so counts survive an operator restart)."""
    pods = ((old_status or {}).get("quarantine") or {}).get("pods") or []
    suspects = {}
    for entry in pods:
        if not isinstance(entry, Mapping) or not entry.get("pod"):
            continue
        suspects[str(entry["pod"])] = Suspect(
            pod=str(entry["pod"]),
            node=str(entry.get("node", "")),
            failed_checks=int(entry.get("failedChecks", 1)),
            case=str(entry.get("case", "")),
            result=str(entry.get("result", "Failed")),
            last_failed_at=str(entry.get("lastFailedAt", "")),
            held=str(entry.get("held", "")),
            due=entry.get("state") == "Held",
        )
    return suspects


def _count(check: PodCheck, previous: Suspect | None) -> Suspect:
    assert check.checked_at is not None
    stamp = run_stamp(check.checked_at)
    if previous is None:
        failed = 1
    else:
        failed = previous.failed_checks + (0 if previous.last_failed_at == stamp else 1)
    return Suspect(check.pod, check.node, failed, check.case or (previous.case if previous else ""),
                   check.result, stamp)  # fmt: skip


def suspects_of(checks: Iterable[PodCheck], previous: Mapping[str, Suspect]) -> tuple[Suspect, ...]:
    """The pods failing while a sibling passes, with their counts; by name.

    A pod that passes drops out (its count starts again). A pod unread this time, or failing while no other
    pod passes (then the revision may be at fault, and GoldenPassed says so), keeps its entry as it was:
    neither counted up nor forgotten. A pod no longer among the checks (gone, terminating) drops out."""
    checks = tuple(checks)
    passing = {c.pod for c in checks if c.result == "Passed"}
    suspects = []
    for check in sorted(checks, key=lambda c: c.pod):
        before = previous.get(check.pod)
        failing = check.result in FAILING and check.checked_at is not None
        if failing and passing - {check.pod}:
            suspects.append(_count(check, before))
        elif before is not None and (check.result == "" or failing):
            suspects.append(replace(before, node=check.node or before.node))
    return tuple(suspects)


def plan_quarantine(
    checks: Iterable[PodCheck],
    previous: Mapping[str, Suspect],
    policy: Policy,
    replicas: int,
    replacing: int,
    rolled_out: bool = True,
) -> QuarantinePlan:
    """Suspects with counts, and which of them to evict now.

    `replicas`: the workload's desired replicas; `replacing`: pods already terminating or not yet Ready that
    are not suspects (replacements starting, earlier evictions); `rolled_out`: every replica runs the
    current template (during a rollout the workload is replacing pods already: nothing is evicted)."""
    suspects = suspects_of(checks, previous)
    if not suspects:
        return QuarantinePlan()
    due = sorted(
        (s for s in suspects if policy.replace_after and s.failed_checks >= policy.replace_after),
        key=lambda s: (-s.failed_checks, s.pod),
    )
    allowed = policy.allowed(replicas)
    budget = max(0, allowed - replacing) if rolled_out else 0
    evict = tuple(s.pod for s in due[:budget])
    held: dict[str, str] = {}
    for suspect in suspects:
        if suspect.pod in evict:
            continue
        if not policy.replace_after:
            held[suspect.pod] = "spec.quarantine.replaceAfterFailedChecks is 0: recorded, never replaced"
        elif suspect.failed_checks < policy.replace_after:
            held[suspect.pod] = (
                f"{suspect.failed_checks} of {policy.replace_after} failed checks before it is replaced"
            )
        elif not rolled_out:
            held[suspect.pod] = "a rollout is replacing the replicas: waiting for it to finish"
        else:
            held[suspect.pod] = (
                f"at most {allowed} of {replicas} replica(s) may be replaced at once "
                f"(maxReplacingPercent {policy.max_replacing_percent}); {replacing} being replaced now"
            )
    due_pods = {s.pod for s in due} if policy.replace_after else {s.pod for s in suspects}
    return QuarantinePlan(
        tuple(replace(s, held=held.get(s.pod, ""), due=s.pod in due_pods) for s in suspects), evict
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def replacing_now(pods: Iterable[Mapping[str, Any]], suspects: Iterable[str]) -> int:
    """Pods of the model being replaced now: terminating, or not Ready and not a suspect (a replacement
    still starting, or any other replica out of service)."""
    suspect = set(suspects)
    count = 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (not _ready(pod) and meta.get("name") not in suspect):
            count += 1
    return count


def suspect_nodes(
    by_model: Mapping[tuple[str, str], Iterable[str]], min_models: int
) -> dict[str, tuple[str, ...]]:
    """Nodes where suspects of at least `min_models` models run: node -> the models (namespace/name)."""
    models_on: dict[str, set[str]] = {}
    for (namespace, name), nodes in by_model.items():
        for node in set(nodes):
            if node:
                models_on.setdefault(node, set()).add(f"{namespace}/{name}")
    return {node: tuple(sorted(m)) for node, m in sorted(models_on.items()) if len(m) >= min_models}


def taint_string() -> str:
    return f"{TAINT_KEY}={TAINT_REASON}:{TAINT_EFFECT}"


def with_suspect_taint(taints: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The node's taints with ours added; None when it already carries it (nothing to write)."""
    current = [dict(t) for t in taints]
    if any(t.get("key") == TAINT_KEY and t.get("effect") == TAINT_EFFECT for t in current):
        return None
    return [*current, {"key": TAINT_KEY, "value": TAINT_REASON, "effect": TAINT_EFFECT}]


__all__ = [
    "FAILING",
    "TAINT_KEY",
    "PodCheck",
    "Policy",
    "QuarantinePlan",
    "Suspect",
    "plan_quarantine",
    "pod_checks",
    "previous_suspects",
    "replacing_now",
    "run_stamp",
    "suspect_nodes",
    "suspects_of",
    "taint_string",
    "with_suspect_taint",
]
