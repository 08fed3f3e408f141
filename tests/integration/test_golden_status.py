"""Golden status on the local control plane: kwok pods have fake IPs, so no server can be read.

The operator must then say exactly that (GoldenPassed Unknown, GoldenResultsUnreadable; ArtifactVerified
Unknown, ArtifactReportsUnreadable) and claim nothing, however Ready the pods look.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.integration.models import Models, example
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def operator(crds: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        crds.env, tmp_path / "operator.log", extra_env={"INFERGATE_GOLDEN_READ_TIMEOUT_SECONDS": "1"}
    ).start()
    try:
        yield process
    finally:
        process.stop()


class ConditionHistory:
    """Every (status, reason) a condition of one model took, watched in the background."""

    def __init__(self, models: Models, name: str, kind: str) -> None:
        self.seen: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(models, name, kind), daemon=True)
        self._thread.start()

    def _poll(self, models: Models, name: str, kind: str) -> None:
        while not self._stop.wait(0.1):
            try:
                cond = models.condition(name, kind)
            except client.ApiException:
                continue
            if cond and (not self.seen or self.seen[-1] != (cond["status"], cond["reason"])):
                self.seen.append((cond["status"], cond["reason"]))

    def stop(self) -> list[tuple[str, str]]:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def test_unreadable_servers_leave_golden_unknown(
    crds: ControlPlane, models_in_namespace: Models, operator: OperatorProcess
) -> None:
    models = models_in_namespace
    body = example("tiny-onnx")
    body["spec"]["replicas"] = 2
    name = body["metadata"]["name"]
    golden_history = ConditionHistory(models, name, "GoldenPassed")
    artifact_history = ConditionHistory(models, name, "ArtifactVerified")
    try:
        models.create(body)
        models.wait_available(name, timeout_s=120)
        models.wait_condition(name, "GoldenPassed", "Unknown", "GoldenResultsUnreadable", timeout_s=120)

        # The condition turns Unknown with the first unreadable pod; the status counts the second once the
        # operator has seen it come up (on a loaded host, a while later).
        def both_pods_counted() -> dict[str, Any] | None:
            current = models.get(name)
            golden = (current.get("status") or {}).get("golden") or {}
            return current if golden.get("podsUnread") == 2 else None

        obj = wait_for(
            both_pods_counted, 120, lambda: f"status.golden of 2 pods: {models.get(name).get('status')}"
        )
    finally:
        golden_seen, artifact_seen = golden_history.stop(), artifact_history.stop()
    status: dict[str, Any] = obj["status"]
    golden = status["golden"]
    assert (golden["podsRead"], golden["podsUnread"], golden["passed"], golden["failed"]) == (0, 2, 0, 0)
    assert golden["revision"] == status["revision"]
    message = models.condition(name, "GoldenPassed")["message"]  # type: ignore[index]
    assert message.startswith(
        f"golden results of 2 pod(s) of revision {status['revision']} could not be read"
    )
    assert status["readyReplicas"] == 2, "kwok marks the pods Ready; that is no golden result"
    assert all(s != "True" for s, _ in golden_seen), golden_seen
    assert ("True", "GoldenOutputsMatched") not in golden_seen
    artifact = models.wait_condition(name, "ArtifactVerified", "Unknown", "ArtifactReportsUnreadable")
    assert artifact["status"]["phase"] == "Ready"
    assert all(s != "True" for s, _ in artifact_seen), artifact_seen
    # Nothing read, nothing claimed about what runs either (issue 18).
    runtime = models.condition(name, "RuntimeMatchesSpec")
    assert runtime is not None
    assert (runtime["status"], runtime["reason"]) == ("Unknown", "RuntimeNotYetReported")
    assert "runtime" not in models.get(name)["status"]
    table = crds.kubectl("get", "igm", name, "-n", models.namespace)
    header, row = table.strip().splitlines()
    assert header.split() == ["NAME", "BACKEND", "READY", "PHASE", "GOLDEN", "RUNTIME", "AGE", "MESSAGE"]
    assert row.split()[1:6] == ["onnxruntime", "2/2", "Ready", "Unknown", "Unknown"]


@pytest.fixture
def models_in_namespace(api_client: client.ApiClient, model_namespace: str) -> Models:
    return Models(api_client, model_namespace)
