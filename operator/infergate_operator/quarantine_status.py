"""status.quarantine and its Events, from what was decided and what the API answered. Pure.

Only what was observed: a pod is listed as replaced once its eviction was accepted (HTTP 201), a node as
tainted once the taint was written or seen on it; a refused eviction (the PDB, HTTP 429) is a reason a pod
is held, not a replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from infergate_operator.quarantine import Suspect, taint_string

REPLACED_KEPT = 10


class QuarantineReason(StrEnum):
    """Reasons of the Events this concern posts (facts, CamelCase)."""

    REPLICA_GOLDEN_FAILED = "ReplicaGoldenFailed"
    REPLACEMENT_HELD = "ReplacementHeld"
    REPLICA_REPLACED = "ReplicaReplaced"
    NODE_TAINTED = "NodeTainted"


Outcome = Literal["evicted", "blocked", "gone", "failed"]


@dataclass(frozen=True)
class Eviction:
    """What the Eviction API answered for one pod."""

    pod: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class QuarantineObservation:
    """This round's suspects (after the evictions), pods evicted now, and suspect nodes of this model."""

    suspects: tuple[Suspect, ...] = ()
    evicted: tuple[Suspect, ...] = ()
    evicted_at: str = ""
    """RFC 3339, when the evictions were accepted."""
    nodes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(node, models) for each tainted node where this model's pods failed."""
    off: bool = False
    """Quarantine does not apply (no periodic golden set): status.quarantine is dropped."""


def after_evictions(suspects: tuple[Suspect, ...], evictions: tuple[Eviction, ...]) -> QuarantineObservation:
    """Suspects whose eviction was accepted leave the list (they are replaced); refused ones stay, held."""
    by_pod = {e.pod: e for e in evictions}
    kept: list[Suspect] = []
    evicted: list[Suspect] = []
    for suspect in suspects:
        eviction = by_pod.get(suspect.pod)
        if eviction is None:
            kept.append(suspect)
        elif eviction.outcome == "evicted":
            evicted.append(suspect)
        elif eviction.outcome == "blocked":
            held = (
                f"the PodDisruptionBudget refused its eviction now: {eviction.detail}; tried again next check"
            )
            kept.append(replace(suspect, held=held[:512]))
        elif eviction.outcome == "failed":
            kept.append(replace(suspect, held=f"its eviction failed: {eviction.detail}"[:512]))
        # gone: it is no longer there to list
    return QuarantineObservation(tuple(kept), tuple(evicted))


def quarantine_status(old: Any, observation: QuarantineObservation | None) -> dict[str, Any] | None:
    """status.quarantine: kept as written while nothing was observed (observation None: an invalid spec);
    None without periodic golden, and when there is nothing to say."""
    if observation is None:
        return dict(old) if isinstance(old, Mapping) else None
    if observation.off:
        return None
    previous = old if isinstance(old, Mapping) else {}
    replaced = [dict(r) for r in previous.get("replaced") or [] if isinstance(r, Mapping)]
    for suspect in observation.evicted:
        replaced.append(
            {
                "pod": suspect.pod,
                "node": suspect.node,
                "failedChecks": suspect.failed_checks,
                "case": suspect.case,
                "replacedAt": observation.evicted_at,
            }
        )
    nodes = [
        {"node": node, "taint": taint_string(), "models": list(models)} for node, models in observation.nodes
    ]
    status: dict[str, Any] = {}
    if observation.suspects:
        status["pods"] = [s.as_status() for s in observation.suspects]
    if replaced:
        status["replaced"] = replaced[-REPLACED_KEPT:]
    if nodes:
        status["nodes"] = nodes
    return status or None


@dataclass(frozen=True)
class QuarantineEvent:
    reason: QuarantineReason
    message: str


def _by(entries: Any, key: str) -> dict[str, Mapping[str, Any]]:
    return {str(e.get(key)): e for e in entries or [] if isinstance(e, Mapping)}


def quarantine_events(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, revision: str | None
) -> list[QuarantineEvent]:
    """A Warning per pod newly suspect, per pod newly held past its count, per pod replaced, per node
    tainted; nothing for counts moving on (status has them)."""
    old, new = old or {}, new or {}
    events: list[QuarantineEvent] = []
    before, after = _by(old.get("pods"), "pod"), _by(new.get("pods"), "pod")
    for pod, entry in after.items():
        prior = before.get(pod)
        where = f"pod {pod} on node {entry.get('node') or '?'}"
        if prior is None:
            events.append(
                QuarantineEvent(
                    QuarantineReason.REPLICA_GOLDEN_FAILED,
                    f"{where}: golden case {entry.get('case') or '?'} {str(entry.get('result')).lower()} "
                    f"while other pods of revision {revision or '?'} pass "
                    f"({entry.get('failedChecks')} failed check(s)); {entry.get('held') or 'replacing it'}",
                )
            )
        if entry.get("state") == "Held" and (
            prior is None or prior.get("state") != "Held" or prior.get("held") != entry.get("held")
        ):
            events.append(
                QuarantineEvent(
                    QuarantineReason.REPLACEMENT_HELD, f"{where}: not replaced yet: {entry.get('held')}"
                )
            )
    old_replaced = {(str(r.get("pod")), str(r.get("replacedAt"))) for r in old.get("replaced") or []}
    for entry in new.get("replaced") or []:
        if (str(entry.get("pod")), str(entry.get("replacedAt"))) in old_replaced:
            continue
        events.append(
            QuarantineEvent(
                QuarantineReason.REPLICA_REPLACED,
                f"evicted pod {entry.get('pod')} on node {entry.get('node') or '?'} after "
                f"{entry.get('failedChecks')} failed golden check(s) in a row "
                f"(case {entry.get('case') or '?'}) while other pods passed; its workload "
                "starts a replacement",
            )
        )
    old_nodes = _by(old.get("nodes"), "node")
    for node, entry in _by(new.get("nodes"), "node").items():
        if node not in old_nodes:
            models = entry.get("models") or []
            events.append(
                QuarantineEvent(
                    QuarantineReason.NODE_TAINTED,
                    f"node {node} tainted {entry.get('taint')}: pods of {len(models)} models failed golden "
                    f"there while their siblings passed ({', '.join(models)})",
                )
            )
    return events


__all__ = [
    "REPLACED_KEPT",
    "Eviction",
    "QuarantineEvent",
    "QuarantineObservation",
    "QuarantineReason",
    "after_evictions",
    "quarantine_events",
    "quarantine_status",
]
