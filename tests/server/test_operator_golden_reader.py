"""The operator's golden reader against real `infergate-server serve` processes on 127.0.0.1.

The reader takes the address the operator derives from a pod (`http://<podIP>:<containerPort>`); here it is
pointed at the local server, and what it reads goes through the same pure steps into status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from infergate_operator.golden import PodRead, PodTarget, observe_reports
from infergate_operator.golden_collector import GoldenCollector
from infergate_operator.golden_reader import GoldenReader
from infergate_operator.observed import Observed, WorkloadObservation
from infergate_operator.status import compute_status

from .conftest import ServerProcess, free_port

OFF_BY_A_BIT = {
    "name": "off-by-a-bit",
    "inputs": {"x": {"shape": [1, 4], "datatype": "FP32", "data": [-1, -2, -3, -4]}},
    "expected": {"y": {"shape": [1, 3], "datatype": "FP32", "data": [0.1, -0.2, 0.31]}},
    "atol": 1e-3,
    "rtol": 0,
}


def _status(targets: tuple[PodTarget, ...], reads: dict[str, PodRead]) -> dict[str, Any]:
    golden, artifact = observe_reports(targets, reads, "rev1")
    observed = Observed(
        name="tiny",
        revision="rev1",
        golden_configured=True,
        golden=golden,
        artifact=artifact,
        workload=WorkloadObservation(
            1, replicas=1, updated_replicas=1, ready_replicas=1, available_replicas=1
        ),
    )
    return compute_status(None, observed, 1, datetime.now(UTC))


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def _read(address: str, pod: str = "tiny-0") -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        reader = GoldenReader(timeout_s=2.0)
        try:
            read = await reader.read(pod, address, "tiny")
        finally:
            await reader.close()
        target = PodTarget(pod, address, ready=True, fetched=False)
        return _status((target,), {pod: read})

    return asyncio.run(go())


def test_a_passing_server_is_read_into_golden_passed(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example)
    srv.wait_ready()
    status = _read(srv.url)
    conditions = _conditions(status)
    assert (conditions["GoldenPassed"]["status"], conditions["GoldenPassed"]["reason"]) == (
        "True",
        "GoldenOutputsMatched",
    )
    assert status["golden"]["passed"] == 2
    assert (status["golden"]["podsRead"], status["golden"]["podsUnread"]) == (1, 0)
    pinned = yaml.safe_load((tiny_example / "server.yaml").read_text())["model"]["sha256"]
    assert conditions["ArtifactVerified"]["status"] == "True"
    assert conditions["ArtifactVerified"]["message"].startswith(
        f"sha256 {pinned[:12]} verified by the server of pod tiny-0"
    )


def test_a_failing_golden_case_is_read_into_golden_failed(start_server: Any, tiny_example: Path) -> None:
    srv = start_server(tiny_example, {"golden": {"cases": [OFF_BY_A_BIT]}})
    assert srv.wait_phase({"NotReady", "Ready", "Failed"})["phase"] == "NotReady"
    status = _read(srv.url)
    golden = _conditions(status)["GoldenPassed"]
    assert (golden["status"], golden["reason"]) == ("False", "GoldenOutputOutOfTolerance")
    assert golden["message"].startswith("case off-by-a-bit failed on pod tiny-0 (maxAbsError 0.01")
    assert status["golden"]["failedCases"][0]["name"] == "off-by-a-bit"
    assert abs(status["golden"]["failedCases"][0]["maxAbsError"] - 0.01) < 1e-4
    assert (status["phase"], status["message"]) == ("Degraded", golden["message"])


def test_a_closed_port_is_unreadable_not_passed() -> None:
    status = _read(f"http://127.0.0.1:{free_port()}")
    golden = _conditions(status)["GoldenPassed"]
    assert (golden["status"], golden["reason"]) == ("Unknown", "GoldenResultsUnreadable")
    assert "connection refused" in golden["message"]
    assert _conditions(status)["ArtifactVerified"]["reason"] == "ArtifactReportsUnreadable"


def test_collector_reads_on_a_transition_and_reports_the_change(tiny_server: ServerProcess) -> None:
    """track() only records the pods; the collector's own task reads them and asks for a refresh."""

    async def go() -> tuple[list[tuple[str, str]], dict[str, PodRead], float]:
        changed: list[tuple[str, str]] = []
        told = asyncio.Event()

        def on_change(key: tuple[str, str]) -> None:
            changed.append(key)
            told.set()

        collector = GoldenCollector(GoldenReader(timeout_s=2.0), on_change=on_change)
        runner = asyncio.get_running_loop().create_task(collector.run())
        targets = (PodTarget("tiny-0", tiny_server.url, ready=True),)
        key = ("ns", "tiny")
        started = asyncio.get_running_loop().time()
        try:
            assert collector.track(key, "tiny", targets, 60.0) == {}, "track() itself reads nothing"
            await asyncio.wait_for(told.wait(), 10)
            reads = dict(collector.track(key, "tiny", targets, 60.0))
        finally:
            runner.cancel()
            await collector.reader.close()
        return changed, reads, asyncio.get_running_loop().time() - started

    changed, reads, _ = asyncio.run(go())
    assert changed == [("ns", "tiny")]
    assert reads["tiny-0"].report is not None
    assert reads["tiny-0"].report["result"] == "Passed"
