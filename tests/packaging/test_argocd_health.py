"""The Argo CD health check (argocd/…/health.lua) run by a real Lua 5.1 (Argo CD's gopher-lua is 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

lua51 = pytest.importorskip("lupa.lua51")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "argocd" / "health" / "serving.infergate.io" / "InferenceModel" / "health.lua"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Runs the script as Argo CD does: `obj` global, returned table read back."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return str(result["status"]), str(result["message"])


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-25T12:00:00Z",
        "observedGeneration": 3,
    }


def model(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.infergate.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": "sentiment", "namespace": "team-a", "generation": generation},
        "spec": {"model": {"uri": "s3://models/sentiment/3/model.onnx"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


READY: dict[str, Any] = {
    "phase": "Ready",
    "message": "2/2 replicas ready on revision 7c9d",
    "observedGeneration": 3,
    "conditions": [
        condition("Available", "True", "MinimumReplicasAvailable"),
        condition("Progressing", "False", "NewRevisionAvailable"),
        condition("Degraded", "False", "AsExpected"),
        condition("GoldenPassed", "True", "GoldenOutputsMatched"),
    ],
}


def test_ready_and_observed_is_healthy() -> None:
    assert health(model(READY)) == ("Healthy", "2/2 replicas ready on revision 7c9d")


def test_no_status_is_progressing() -> None:
    status, message = health(model(None))
    assert status == "Progressing"
    assert "operator" in message


def test_stale_observed_generation_is_progressing_even_if_ready() -> None:
    status, message = health(model(READY, generation=4))
    assert status == "Progressing"
    assert message.endswith("generation 4")


def test_missing_observed_generation_is_progressing() -> None:
    stale = {k: v for k, v in READY.items() if k != "observedGeneration"}
    assert health(model(stale))[0] == "Progressing"


@pytest.mark.parametrize("phase", ["Pending", "Progressing", "SomethingNew"])
def test_in_between_phases_are_progressing(phase: str) -> None:
    assert health(model({**READY, "phase": phase}))[0] == "Progressing"


def test_failed_phase_is_degraded_with_the_operators_message() -> None:
    status = {
        "phase": "Failed",
        "message": "spec.model.sha256: ArtifactDigestMismatch",
        "observedGeneration": 3,
        "conditions": [condition("Degraded", "True", "ArtifactDigestMismatch", "digest differs")],
    }
    assert health(model(status)) == ("Degraded", "spec.model.sha256: ArtifactDigestMismatch")


def test_degraded_condition_wins_over_a_ready_phase() -> None:
    conditions = [c for c in READY["conditions"] if c["type"] != "Degraded"]
    conditions.append(condition("Degraded", "True", "GoldenOutputOutOfTolerance", "1 golden case(s) failed"))
    status = {"phase": "Ready", "observedGeneration": 3, "conditions": conditions}
    assert health(model(status)) == ("Degraded", "GoldenOutputOutOfTolerance: 1 golden case(s) failed")


def test_degraded_phase_is_degraded() -> None:
    assert health(model({**READY, "phase": "Degraded"}))[0] == "Degraded"


def test_paused_canary_is_suspended() -> None:
    status = {**READY, "phase": "Paused", "message": "canary at 20%: paused for 2m", "canaryWeight": 20}
    assert health(model(status)) == ("Suspended", "canary at 20%: paused for 2m")


def test_scaled_to_zero_is_suspended() -> None:
    status = {
        "phase": "Pending",
        "observedGeneration": 3,
        "conditions": [
            condition("Available", "False", "ScaledToZero", "Deployment sentiment is scaled to 0")
        ],
    }
    assert health(model(status))[0] == "Suspended"


def test_scaled_to_zero_phase_is_suspended() -> None:
    status = {
        "phase": "ScaledToZero",
        "message": "Deployment sentiment is scaled to 0 replicas",
        "observedGeneration": 3,
        "conditions": [
            condition("Available", "False", "ScaledToZero", "Deployment sentiment is scaled to 0 replicas")
        ],
    }
    assert health(model(status)) == ("Suspended", "Deployment sentiment is scaled to 0 replicas")
    assert health(model({**status, "conditions": []}))[0] == "Suspended"


def test_ready_phase_with_available_false_is_not_healthy() -> None:
    conditions = [c for c in READY["conditions"] if c["type"] != "Available"]
    conditions.append(condition("Available", "False", "ReplicasUnavailable", "0 of 2 replicas available"))
    assert health(model({**READY, "conditions": conditions}))[0] == "Progressing"


def test_empty_message_falls_back_to_a_description() -> None:
    status, message = health(model({**READY, "message": ""}))
    assert (status, message) == ("Healthy", "InferenceModel is ready")


def test_script_also_runs_on_newer_lua() -> None:
    """gopher-lua is 5.1; the script uses nothing later versions dropped (checked on 5.4)."""
    lua54 = pytest.importorskip("lupa.lua54")
    lua = lua54.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(model(READY), recursive=True)
    assert lua.execute(SCRIPT.read_text())["status"] == "Healthy"
