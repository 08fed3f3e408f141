"""Condition types, reasons and message templates: the one place their spellings live.

Types are states (DESIGN §1). Reasons are CamelCase facts that agree with the status they go with;
messages are templates filled by status.py and name the field or child at fault.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    ARTIFACT_VERIFIED = "ArtifactVerified"
    GOLDEN_PASSED = "GoldenPassed"
    RUNTIME_MATCHES_SPEC = "RuntimeMatchesSpec"


CONDITION_ORDER = tuple(ConditionType)


class Reason(StrEnum):
    # Available
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    WORKLOAD_NOT_FOUND = "WorkloadNotFound"
    SCALED_TO_ZERO = "ScaledToZero"
    # Progressing
    NEW_REVISION_ROLLING_OUT = "NewRevisionRollingOut"
    NEW_REVISION_AVAILABLE = "NewRevisionAvailable"
    REPLICAS_STARTING = "ReplicasStarting"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # Degraded (True) and its all-clear (False)
    AS_EXPECTED = "AsExpected"
    INVALID_SPEC = "InvalidSpec"
    FIELD_CONFLICT = "FieldConflict"
    CHILD_REJECTED = "ChildRejected"
    ROLLOUTS_NOT_INSTALLED = "RolloutsNotInstalled"
    AUTOSCALER_NOT_INSTALLED = "AutoscalerNotInstalled"
    NODES_LOST = "NodesLost"
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CRASH_LOOPING = "ContainerCrashLooping"
    PODS_NOT_CREATED = "PodsNotCreated"
    # ArtifactVerified
    ARTIFACT_DIGEST_VERIFIED = "ArtifactDigestVerified"
    ARTIFACT_DIGEST_MISMATCH = "ArtifactDigestMismatch"
    SIGNATURE_VERIFICATION_FAILED = "SignatureVerificationFailed"
    ARTIFACT_FETCH_FAILED = "ArtifactFetchFailed"
    ARTIFACT_NOT_YET_FETCHED = "ArtifactNotYetFetched"
    ARTIFACT_REPORTS_UNREADABLE = "ArtifactReportsUnreadable"
    ARTIFACT_DIGEST_UNCHECKED = "ArtifactDigestUnchecked"
    # GoldenPassed
    GOLDEN_OUTPUTS_MATCHED = "GoldenOutputsMatched"
    GOLDEN_OUTPUT_OUT_OF_TOLERANCE = "GoldenOutputOutOfTolerance"
    GOLDEN_NOT_YET_CHECKED = "GoldenNotYetChecked"
    GOLDEN_RESULTS_UNREADABLE = "GoldenResultsUnreadable"
    NO_GOLDEN_SET = "NoGoldenSet"
    # RuntimeMatchesSpec (issue 18): what the servers report running vs the spec
    RUNTIME_AS_ASKED = "RuntimeAsAsked"
    RUNTIME_DIFFERS_FROM_SPEC = "RuntimeDiffersFromSpec"
    RUNTIME_NOT_YET_REPORTED = "RuntimeNotYetReported"
    # Canary (issue 6): Progressing True while it walks its steps, False once promoted or aborted
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_PAUSED = "CanaryPaused"
    CANARY_PROMOTED = "CanaryPromoted"
    CANARY_ABORTED = "CanaryAborted"
    WORKLOAD_HANDOVER = "WorkloadHandover"


# Reasons a failed `fetch` init container may put first in its termination message ("Reason: detail").
ARTIFACT_FAILURE_REASONS = frozenset(
    {Reason.ARTIFACT_DIGEST_MISMATCH, Reason.SIGNATURE_VERIFICATION_FAILED, Reason.ARTIFACT_FETCH_FAILED}
)


class Message:
    """Message templates, paired with the reasons above (str.format fields)."""

    MINIMUM_REPLICAS_AVAILABLE = "{available} of {desired} replicas available and serving"
    REPLICAS_UNAVAILABLE = "{available} of {desired} replicas available"
    WORKLOAD_NOT_FOUND = "{kind} {name} does not exist yet"
    SCALED_TO_ZERO = "{kind} {name} is scaled to 0 replicas"
    NEW_REVISION_ROLLING_OUT = (
        "revision {revision}: {updated} of {desired} replicas updated, {available} available"
    )
    NEW_REVISION_AVAILABLE = "revision {revision} is available on {available} replicas"
    REPLICAS_STARTING = "{available} of {desired} replicas available, the rest starting"
    PROGRESS_DEADLINE_EXCEEDED = "{kind} {name}: {detail}"
    AS_EXPECTED = "no problems detected"
    UNSCHEDULABLE = "{pods} pod(s) cannot be scheduled: {detail}"
    NODES_LOST = "{replicas} replica(s) lost with deleted node(s) {nodes}; {after}"
    PODS_STILL_BOUND = "{pods} pod(s) still bound to them until the pod garbage collector removes them"
    REPLACEMENTS_STARTING = "replacements scheduled, {available} of {desired} replicas available"
    IMAGE_PULL_FAILED = "pod {pod}: {detail}"
    CONTAINER_CRASH_LOOPING = "pod {pod} container {container} is crash-looping: {detail}"
    PODS_NOT_CREATED = "{kind} {name} cannot create its pods: {detail}"
    ARTIFACT_DIGEST_VERIFIED = (
        "sha256 {digest} verified by the server of pod {pod} before loading{more}{signature}"
    )
    ARTIFACT_MORE_PODS = " (and by {count} more pod(s) of revision {revision})"
    ARTIFACT_SIGNATURE_BY_FETCH = "; spec.model.signature verified by its fetch init container"
    ARTIFACT_NOT_YET_FETCHED = "no pod of revision {revision} has fetched spec.model.uri yet"
    ARTIFACT_FAILED = "spec.model: pod {pod}: {detail}"
    ARTIFACT_REPORTS_UNREADABLE = (
        "the servers of {pods} pod(s) of revision {revision} could not be read ({pod}: {why}); "
        "nothing verified is claimed"
    )
    ARTIFACT_DIGEST_UNCHECKED = (
        "the server of pod {pod} loaded sha256 {digest} with no spec.model.sha256 to check it against"
    )
    GOLDEN_OUTPUTS_MATCHED = "{passed} golden case(s) matched on {pods} pod(s) of revision {revision}{unread}"
    GOLDEN_SOME_UNREAD = "; {count} pod(s) unreadable ({pod}: {why})"
    GOLDEN_OUTPUT_OUT_OF_TOLERANCE = (
        "case {case} {result} on pod {pod} (maxAbsError {abs_error}, maxRelError {rel_error}); "
        "{failed} of {total} case(s) failed across {pods} pod(s) of revision {revision}"
    )
    GOLDEN_NOT_YET_CHECKED = "no pod of revision {revision} has golden results to read yet"
    GOLDEN_NOT_YET_RUN = (
        "{pods} pod(s) of revision {revision} read, none has finished its golden run ({pod}: {detail})"
    )
    GOLDEN_RESULTS_UNREADABLE = (
        "golden results of {pods} pod(s) of revision {revision} could not be read ({pod}: {why}); "
        "nothing is claimed"
    )
    NO_GOLDEN_SET = "spec.golden is not set: replicas are ready once the model loads"
    RUNTIME_AS_ASKED = (
        "{pods} pod(s) of revision {revision} run {runtime} on {provider} at {precision}, as asked ({fields})"
    )
    RUNTIME_MISMATCH = "{field}: asked {asked}, running {running} (pod {pod}, {pods} pod(s))"
    RUNTIME_NOT_YET_REPORTED = "no server of revision {revision} has reported its runtime facts yet"
    READY = "{ready}/{desired} replicas ready, revision {revision}"
    CANARY_PROGRESSING = "revision {revision}: canary at step {step} of {steps}, weight {weight}%"
    CANARY_PAUSED = "revision {revision}: canary paused at step {step} of {steps}, weight {weight}%: {detail}"
    CANARY_PROMOTED = "revision {revision} promoted through {steps} steps; {available} replicas available"
    CANARY_ABORTED = "revision {revision}: canary aborted, stable {stable} keeps serving: {detail}"
    PENDING = "waiting for {kind} {name}"


# Condition statuses that call for a Warning event rather than a Normal one.
BAD_STATUS: dict[str, str] = {
    ConditionType.AVAILABLE: "False",
    ConditionType.DEGRADED: "True",
    ConditionType.ARTIFACT_VERIFIED: "False",
    ConditionType.GOLDEN_PASSED: "False",
    ConditionType.RUNTIME_MATCHES_SPEC: "False",
}
