"""Golden reports read from servers -> observations -> GoldenPassed / ArtifactVerified and status.golden."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from infergate_operator.conditions import Reason
from infergate_operator.crd import PRINTER_COLUMNS
from infergate_operator.golden import golden_targets, observe_reports, pod_address, report_key
from infergate_operator.golden_collector import MAX_PERIOD_S, MIN_PERIOD_S, read_period
from infergate_operator.observed import Observed, WorkloadObservation
from infergate_operator.spec import InferenceModelStatus
from infergate_operator.status import GOLDEN_STATUS_REFRESH_S, changed, compute_status

from tests.unit.reports import DIGEST, READ_AT, case, failing, passing, read, report, served, target

T0 = datetime.fromtimestamp(READ_AT, UTC)
BASE = Observed(
    name="m",
    revision="abc123",
    golden_configured=True,
    workload=WorkloadObservation(2, replicas=2, updated_replicas=2, ready_replicas=2, available_replicas=2),
)


def conds(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def verdict(status: dict[str, Any], kind: str) -> tuple[str, str]:
    c = conds(status)[kind]
    return c["status"], c["reason"]


def pod(
    name: str,
    ip: str | None = "10.0.0.7",
    phase: str = "Running",
    spec_hash: str = "new",
    ready: bool = True,
    fetch_exit: int | None = 0,
    **extra: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
    if fetch_exit is not None:
        status["initContainerStatuses"] = [
            {"name": "fetch", "state": {"terminated": {"exitCode": fetch_exit}}}
        ]
    return {
        "metadata": {"name": name, "annotations": {"serving.infergate.io/spec-hash": spec_hash}, **extra},
        "spec": {
            "containers": [
                {"name": "server", "ports": [{"name": "http", "containerPort": 8080}]},
                {"name": "sidecar", "ports": [{"name": "http", "containerPort": 9999}]},
            ]
        },
        "status": status,
    }


# --- which pods, at what address -------------------------------------------------------------------


def test_address_is_pod_ip_and_the_server_containers_http_port() -> None:
    assert pod_address(pod("a", ip="10.244.1.5")) == "http://10.244.1.5:8080"
    assert pod_address(pod("a", ip="fd00::5")) == "http://[fd00::5]:8080"
    assert pod_address(pod("a", ip=None)) is None
    no_port = pod("a")
    no_port["spec"]["containers"][0]["ports"] = []
    assert pod_address(no_port) is None


def test_targets_are_running_current_revision_pods_with_an_address() -> None:
    pods = [
        pod("m-b", ip="10.0.0.2", ready=False, fetch_exit=None),
        pod("m-a", ip="10.0.0.1"),
        pod("m-old", spec_hash="old"),
        pod("m-pending", ip=None, phase="Pending"),
        pod("m-going", deletionTimestamp="2026-11-25T12:00:00Z"),
    ]
    targets = golden_targets(pods, {"serving.infergate.io/spec-hash": "new"})
    assert [(t.pod, t.address, t.ready, t.fetched) for t in targets] == [
        ("m-a", "http://10.0.0.1:8080", True, True),
        ("m-b", "http://10.0.0.2:8080", False, False),
    ]


# --- reports -> conditions and status --------------------------------------------------------------


def test_all_pods_pass() -> None:
    status = compute_status(None, passing(BASE), 1, T0)
    assert verdict(status, "GoldenPassed") == ("True", Reason.GOLDEN_OUTPUTS_MATCHED)
    message = conds(status)["GoldenPassed"]["message"]
    assert "2 golden case(s) matched on 2 pod(s) of revision abc123" in message
    assert status["golden"] == {
        "passed": 2,
        "failed": 0,
        "maxAbsError": 1e-6,
        "maxRelError": 1e-6,
        "checkedAt": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": "abc123",
        "podsRead": 2,
        "podsUnread": 0,
    }
    assert verdict(status, "ArtifactVerified") == ("True", Reason.ARTIFACT_DIGEST_VERIFIED)
    message = conds(status)["ArtifactVerified"]["message"]
    assert f"sha256 {DIGEST[:12]} verified by the server of pod m-0" in message
    assert "1 more pod(s)" in message
    assert status["phase"] == "Ready"
    InferenceModelStatus.model_validate(status)  # nothing outside the CRD schema (it would be pruned)


def test_one_case_failing_on_one_pod_names_the_case_and_pod() -> None:
    status = compute_status(None, failing(BASE), 1, T0)
    assert verdict(status, "GoldenPassed") == ("False", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE)
    message = conds(status)["GoldenPassed"]["message"]
    assert message.startswith("case negative failed on pod m-1 (maxAbsError 0.5, maxRelError 0.25)")
    assert "1 of 2 case(s) failed across 2 pod(s)" in message
    golden = status["golden"]
    assert (golden["passed"], golden["failed"], golden["podsRead"]) == (1, 1, 2)
    assert golden["failedCases"] == [
        {
            "name": "negative",
            "result": "Failed",
            "pod": "m-1",
            "pods": 1,
            "maxAbsError": 0.5,
            "maxRelError": 0.25,
        }
    ]
    assert verdict(status, "Degraded") == ("True", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE)
    # what `kubectl get igm` shows: the GOLDEN column is GoldenPassed's status, MESSAGE the phase message
    golden_column = next(c for c in PRINTER_COLUMNS if c["name"] == "Golden")
    assert golden_column["jsonPath"] == '.status.conditions[?(@.type=="GoldenPassed")].status'
    message_column = next(c for c in PRINTER_COLUMNS if c["name"] == "Message")
    assert (message_column["jsonPath"], message_column.get("priority", 0)) == (".status.message", 0)
    assert conds(status)["GoldenPassed"]["status"] == "False"
    assert (status["phase"], status["message"]) == ("Degraded", message)
    InferenceModelStatus.model_validate(status)


def test_unreadable_servers_claim_nothing() -> None:
    a, b = target("m-0"), target("m-1", ip="10.0.0.2")
    observed = served(BASE, (a, read(a, error="no route to host")), (b, read(b, error="timed out after 2 s")))
    status = compute_status(None, observed, 1, T0)
    assert verdict(status, "GoldenPassed") == ("Unknown", Reason.GOLDEN_RESULTS_UNREADABLE)
    message = conds(status)["GoldenPassed"]["message"]
    assert "2 pod(s) of revision abc123 could not be read (m-0: no route to host)" in message
    assert verdict(status, "ArtifactVerified") == ("Unknown", Reason.ARTIFACT_REPORTS_UNREADABLE)
    assert "nothing verified is claimed" in conds(status)["ArtifactVerified"]["message"]
    golden = status["golden"]
    assert (golden["passed"], golden["failed"], golden["podsRead"], golden["podsUnread"]) == (0, 0, 0, 2)
    assert "checkedAt" not in golden
    assert "failedCases" not in golden
    # two ready replicas, yet no golden claim: readiness is not a golden result
    assert status["readyReplicas"] == 2
    assert status["phase"] == "Ready"


def test_ready_replicas_alone_never_mean_golden_passed() -> None:
    status = compute_status(None, BASE, 1, T0)
    assert verdict(status, "GoldenPassed") == ("Unknown", Reason.GOLDEN_NOT_YET_CHECKED)
    assert verdict(status, "ArtifactVerified") == ("Unknown", Reason.ARTIFACT_NOT_YET_FETCHED)
    assert "golden" not in status


def test_mixed_readable_and_unreadable_pods() -> None:
    a, b = target("m-0"), target("m-1", ip="10.0.0.2")
    observed = served(BASE, (a, read(a, report(case("positive")))), (b, read(b, error="connection refused")))
    status = compute_status(None, observed, 1, T0)
    assert verdict(status, "GoldenPassed") == ("True", Reason.GOLDEN_OUTPUTS_MATCHED)
    message = conds(status)["GoldenPassed"]["message"]
    assert "matched on 1 pod(s)" in message
    assert "1 pod(s) unreadable (m-1: connection refused)" in message
    assert (status["golden"]["podsRead"], status["golden"]["podsUnread"]) == (1, 1)
    # a failure on the readable pod wins over the unreadable one
    bad = report(case("positive", passed=False, abs_error=3.0, rel_error=1.0))
    status = compute_status(None, served(BASE, (a, read(a, bad)), (b, read(b, error="x"))), 1, T0)
    assert verdict(status, "GoldenPassed") == ("False", Reason.GOLDEN_OUTPUT_OUT_OF_TOLERANCE)


def test_old_revision_pods_and_stale_addresses_are_ignored() -> None:
    current = target("m-new")
    old_read = read(target("m-old"), report(case("positive", passed=False)))
    moved = read(target("m-new", ip="10.9.9.9"), report(case("positive", passed=False)))  # before a restart
    golden, artifact = observe_reports((current,), {"m-old": old_read}, "abc123")
    assert golden is None
    assert artifact is None
    golden, _ = observe_reports((current,), {"m-new": moved}, "abc123")
    assert golden is None
    golden, _ = observe_reports((current,), {"m-new": read(current, report(case("positive")))}, "abc123")
    assert golden is not None
    assert (golden.passed, golden.failed, golden.pods_read) == (1, 0, 1)


def test_server_still_loading_is_not_yet_checked() -> None:
    a = target("m-0")
    loading = report(phase="Loading", reason="loading model.onnx with onnxruntime")
    status = compute_status(None, served(BASE, (a, read(a, loading))), 1, T0)
    assert verdict(status, "GoldenPassed") == ("Unknown", Reason.GOLDEN_NOT_YET_CHECKED)
    assert "m-0: Loading: loading model.onnx" in conds(status)["GoldenPassed"]["message"]
    assert verdict(status, "ArtifactVerified") == ("True", Reason.ARTIFACT_DIGEST_VERIFIED)


def test_server_that_refused_the_artifact() -> None:
    a = target("m-0")
    refused = report(
        phase="Failed", reason="ArtifactDigestMismatch: sha256 is 00ff, expected 9f2c", digest=None
    )
    status = compute_status(None, served(BASE, (a, read(a, refused))), 1, T0)
    assert verdict(status, "ArtifactVerified") == ("False", Reason.ARTIFACT_DIGEST_MISMATCH)
    assert conds(status)["ArtifactVerified"]["message"].startswith(
        "spec.model: pod m-0: ArtifactDigestMismatch"
    )


def test_signature_is_credited_to_the_fetch_init_container_only_when_it_ran() -> None:
    fetched, not_fetched = target("m-0", fetched=True), target("m-0", fetched=False)
    signed = report(case("positive"), signature=True)
    with_fetch = compute_status(None, served(BASE, (fetched, read(fetched, signed))), 1, T0)
    assert (
        "signature verified by its fetch init container" in conds(with_fetch)["ArtifactVerified"]["message"]
    )
    without = compute_status(None, served(BASE, (not_fetched, read(not_fetched, signed))), 1, T0)
    assert "signature" not in conds(without)["ArtifactVerified"]["message"]


def test_unpinned_digest_is_not_called_verified() -> None:
    a = target("m-0")
    status = compute_status(None, served(BASE, (a, read(a, report(case("p"), verified=False)))), 1, T0)
    assert verdict(status, "ArtifactVerified") == ("Unknown", Reason.ARTIFACT_DIGEST_UNCHECKED)


def test_no_golden_set_writes_no_golden_status() -> None:
    status = compute_status(None, passing(replace(BASE, golden_configured=False)), 1, T0)
    assert verdict(status, "GoldenPassed") == ("Unknown", Reason.NO_GOLDEN_SET)
    assert "golden" not in status
    assert verdict(status, "ArtifactVerified") == ("True", Reason.ARTIFACT_DIGEST_VERIFIED)


# --- one write per change: checkedAt does not churn -------------------------------------------------


def reread(observed: Observed, seconds: float, abs_error: float = 1e-6) -> Observed:
    """The same pods read again `seconds` later, same verdicts (errors may wobble)."""
    pairs = []
    for i in range(2):
        t = target(f"m-{i}", ip=f"10.0.0.{i + 1}")
        cases = (case("positive", abs_error=abs_error), case("negative"))
        pairs.append((t, read(t, report(*cases), at=READ_AT + seconds)))
    return served(observed, *pairs)


def test_rereading_the_same_results_writes_nothing_until_the_refresh_interval() -> None:
    first = compute_status(None, passing(BASE), 1, T0)
    minute = compute_status(first, reread(BASE, 60, abs_error=2e-6), 1, T0 + timedelta(seconds=60))
    assert not changed(first, minute), "a re-read with the same verdicts must not write status"
    late = GOLDEN_STATUS_REFRESH_S + 1
    refreshed = compute_status(first, reread(BASE, late), 1, T0 + timedelta(seconds=late))
    assert changed(first, refreshed)
    assert refreshed["golden"]["checkedAt"] == (T0 + timedelta(seconds=late)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_changed_verdict_is_written_at_once() -> None:
    first = compute_status(None, passing(BASE), 1, T0)
    broken = compute_status(first, failing(BASE), 1, T0 + timedelta(seconds=30))
    assert broken["golden"]["failed"] == 1
    assert verdict(broken, "GoldenPassed")[0] == "False"


def test_report_key_moves_with_verdicts_not_with_error_magnitudes() -> None:
    t = target("m-0")
    base = report(case("positive", abs_error=1e-6))
    assert report_key(read(t, base)) == report_key(read(t, report(case("positive", abs_error=3e-6)), at=9.0))
    assert report_key(read(t, base)) != report_key(read(t, report(case("positive", passed=False))))
    assert report_key(read(t, base)) != report_key(read(t, error="timed out after 2 s"))


@pytest.mark.parametrize(
    ("period", "expected"),
    [(None, MAX_PERIOD_S), (0, MAX_PERIOD_S), (1, MIN_PERIOD_S), (60, 60.0), (86_400, MAX_PERIOD_S)],
)
def test_read_period_follows_golden_period_within_bounds(period: int | None, expected: float) -> None:
    assert read_period(period) == expected
