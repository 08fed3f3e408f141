"""GoldenPassed, ArtifactVerified and status.golden from what the servers reported: pure (status.py calls it).

Only what was read counts: no condition turns True from readiness or from a pod merely existing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from infergate_operator.conditions import ConditionType, Message, Reason
from infergate_operator.observed import Observed

Condition = dict[str, Any]
# status.golden is rewritten when its verdict changes, and otherwise at most this often (checkedAt moves):
# servers re-run golden every spec.golden.periodSeconds and the operator reads them as often, but a model
# whose results hold costs one status write per this many seconds, not one per period.
GOLDEN_STATUS_REFRESH_S = 600


def condition(kind: ConditionType, status: str, reason: Reason, message: str) -> Condition:
    return {"type": str(kind), "status": status, "reason": str(reason), "message": message}


def _short(digest: str) -> str:
    return digest[:12]


def artifact_condition(observed: Observed, old: Condition | None, generation: int) -> Condition:
    """From what was observed only: a failed fetch (its termination message), else what the servers of the
    current revision report having verified; Unknown, saying why, when nothing could be read."""
    pods, a = observed.pods, observed.artifact
    revision = observed.revision or "?"
    kind = ConditionType.ARTIFACT_VERIFIED
    if pods.artifact_failures:
        failure = pods.artifact_failures[0]
        text = Message.ARTIFACT_FAILED.format(pod=failure.pod, detail=failure.message)
        return condition(kind, "False", Reason(failure.reason), text)
    if a is not None and a.mismatches:
        pod, detail = a.mismatches[0]
        text = Message.ARTIFACT_FAILED.format(pod=pod, detail=detail)
        return condition(kind, "False", Reason.ARTIFACT_DIGEST_MISMATCH, text)
    if a is not None and a.verified:
        pod, digest = a.verified[0]
        others = len(a.verified) - 1
        more = Message.ARTIFACT_MORE_PODS.format(count=others, revision=revision) if others else ""
        signature = Message.ARTIFACT_SIGNATURE_BY_FETCH if pod in a.signature_by_fetch else ""
        text = Message.ARTIFACT_DIGEST_VERIFIED.format(
            digest=_short(digest), pod=pod, more=more, signature=signature
        )
        return condition(kind, "True", Reason.ARTIFACT_DIGEST_VERIFIED, text)
    if a is not None and a.unpinned:
        pod, digest = a.unpinned[0]
        text = Message.ARTIFACT_DIGEST_UNCHECKED.format(pod=pod, digest=_short(digest))
        return condition(kind, "Unknown", Reason.ARTIFACT_DIGEST_UNCHECKED, text)
    if a is not None and a.unread:
        pod, why = a.unread[0]
        text = Message.ARTIFACT_REPORTS_UNREADABLE.format(
            pods=a.pods_unread, revision=revision, pod=pod, why=why
        )
        return condition(kind, "Unknown", Reason.ARTIFACT_REPORTS_UNREADABLE, text)
    if a is None and old is not None and old.get("observedGeneration") == generation:
        return {key: old[key] for key in ("type", "status", "reason", "message") if key in old}
    text = Message.ARTIFACT_NOT_YET_FETCHED.format(revision=revision)
    return condition(kind, "Unknown", Reason.ARTIFACT_NOT_YET_FETCHED, text)


def _error(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def golden_condition(
    observed: Observed,
    old: Condition | None = None,
    generation: int = 0,
    old_revision: str | None = None,
) -> Condition:
    """True only from results read from the current revision's servers; never inferred from readiness.
    Before the first read of this process (an operator restart), the condition written from an earlier
    read of the same revision and generation is kept: it is still what was last read, and rewriting it to
    "not yet checked" and back would cost every model with pods two status writes and two Events."""
    g = observed.golden
    kind = ConditionType.GOLDEN_PASSED
    revision = observed.revision or "?"
    if not observed.golden_configured:
        return condition(kind, "Unknown", Reason.NO_GOLDEN_SET, Message.NO_GOLDEN_SET)
    if g is None or g.pods_read + g.pods_unread == 0:
        same = old_revision is not None and old_revision == observed.revision
        if same and old is not None and old.get("observedGeneration") == generation:
            return {key: old[key] for key in ("type", "status", "reason", "message") if key in old}
        text = Message.GOLDEN_NOT_YET_CHECKED.format(revision=revision)
        return condition(kind, "Unknown", Reason.GOLDEN_NOT_YET_CHECKED, text)
    if g.failed_cases:
        case = g.failed_cases[0]
        text = Message.GOLDEN_OUTPUT_OUT_OF_TOLERANCE.format(
            case=case.name,
            result=case.result.lower(),
            pod=case.pod,
            abs_error=_error(case.max_abs_error),
            rel_error=_error(case.max_rel_error),
            failed=g.failed,
            total=g.failed + g.passed,
            pods=g.pods_checked,
            revision=revision,
        )
        return condition(kind, "False", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE, text)
    if g.passed > 0:
        unread = ""
        if g.unread:
            pod, why = g.unread[0]
            unread = Message.GOLDEN_SOME_UNREAD.format(count=g.pods_unread, pod=pod, why=why)
        text = Message.GOLDEN_OUTPUTS_MATCHED.format(
            passed=g.passed, pods=g.pods_checked, revision=revision, unread=unread
        )
        return condition(kind, "True", Reason.GOLDEN_OUTPUTS_MATCHED, text)
    if g.pods_read == 0:
        pod, why = g.unread[0]
        text = Message.GOLDEN_RESULTS_UNREADABLE.format(
            pods=g.pods_unread, revision=revision, pod=pod, why=why
        )
        return condition(kind, "Unknown", Reason.GOLDEN_RESULTS_UNREADABLE, text)
    pod, detail = g.not_checked[0] if g.not_checked else ("?", "no cases reported")
    text = Message.GOLDEN_NOT_YET_RUN.format(pods=g.pods_read, revision=revision, pod=pod, detail=detail)
    return condition(kind, "Unknown", Reason.GOLDEN_NOT_YET_CHECKED, text)


def _verdict(golden: Mapping[str, Any]) -> dict[str, Any]:
    """What a golden status says, without when it was read or error magnitudes (which may wobble)."""
    volatile = ("checkedAt", "maxAbsError", "maxRelError")
    cases = [{k: v for k, v in c.items() if k not in volatile} for c in golden.get("failedCases") or []]
    return {**{k: v for k, v in golden.items() if k not in volatile}, "failedCases": cases}


def golden_status(old: Any, observed: Observed, now: datetime) -> dict[str, Any] | None:
    """status.golden: the newest results read, written when what they say changes, else kept as written
    (checkedAt and errors included) for up to GOLDEN_STATUS_REFRESH_S, so that reading every period does
    not write status every period. Kept as is while nothing was read; dropped without a golden set."""
    previous = dict(old) if isinstance(old, Mapping) else None
    if observed.invalid_spec:
        return previous  # the last good spec's pods keep serving; nothing new was read for this one
    if not observed.golden_configured:
        return None
    if observed.golden is None or observed.golden.pods_read + observed.golden.pods_unread == 0:
        return previous
    new = observed.golden.as_status()
    if previous is None or _verdict(previous) != _verdict(new):
        return new
    try:
        written = datetime.strptime(str(previous.get("checkedAt")), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return new
    return previous if (now - written).total_seconds() < GOLDEN_STATUS_REFRESH_S else new


__all__ = [
    "GOLDEN_STATUS_REFRESH_S",
    "Condition",
    "artifact_condition",
    "condition",
    "golden_condition",
    "golden_status",
]
