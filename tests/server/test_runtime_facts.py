"""Runtime facts (issue 18): what a real server on this CPU host reports running, in its metadata, its
metrics and its golden report, read by the operator's reader and compared with the spec (RuntimeMatchesSpec).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from infergate_operator.golden import PodTarget
from infergate_operator.golden_reader import GoldenReader
from infergate_operator.observed import Observed
from infergate_operator.runtime_status import asked_runtime, observe_runtime
from infergate_operator.spec import InferenceModelSpec
from infergate_operator.status import compute_status

from .conftest import ServerProcess

ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def _spec(example: Path, runtime: dict[str, Any] | None = None) -> InferenceModelSpec:
    body = yaml.safe_load((example / "inferencemodel.yaml").read_text())
    body["spec"]["runtime"].update(runtime or {})
    return InferenceModelSpec.model_validate(body["spec"])


def _status(url: str, spec: InferenceModelSpec) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        reader = GoldenReader(timeout_s=2.0)
        try:
            read = await reader.read("tiny-0", url, "tiny")
        finally:
            await reader.close()
        target = PodTarget("tiny-0", url, ready=True)
        runtime = observe_runtime((target,), {"tiny-0": read}, "rev1", asked_runtime(spec))
        observed = Observed(name="tiny", revision="rev1", runtime=runtime)
        return compute_status(None, observed, 1, datetime.now(UTC))

    return asyncio.run(go())


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "RuntimeMatchesSpec")


def test_a_server_running_as_asked_reports_its_facts_everywhere(
    tiny_server: ServerProcess, tiny_example: Path
) -> None:
    meta = httpx.get(tiny_server.url + "/v2/models/tiny", timeout=5).json()["parameters"]
    assert (meta["provider"], meta["precision"], meta["intraOpThreads"]) == (
        "CPUExecutionProvider",
        "fp32",
        "1",
    )
    assert meta["gpuCount"] == "0"
    assert meta["gpuProduct"] == ""
    runtime = httpx.get(tiny_server.url + "/v2/models/tiny/golden", timeout=5).json()["runtime"]
    pinned = yaml.safe_load((tiny_example / "server.yaml").read_text())["model"]["sha256"]
    assert runtime["artifactSha256"] == pinned
    assert runtime["runtime"].startswith("onnxruntime ")
    metrics = httpx.get(tiny_server.url + "/metrics", timeout=5).text
    info = next(line for line in metrics.splitlines() if line.startswith("inference_runtime_info{"))
    assert 'provider="CPUExecutionProvider"' in info
    assert 'precision="fp32"' in info
    assert info.endswith(" 1.0")

    status = _status(tiny_server.url, _spec(tiny_example))
    cond = _condition(status)
    assert (cond["status"], cond["reason"]) == ("True", "RuntimeAsAsked"), cond
    assert status["runtime"]["provider"] == "CPUExecutionProvider"
    assert status["runtime"]["intraOpThreads"] == "1"
    assert "mismatches" not in status["runtime"]


def test_asking_what_this_host_cannot_give_shows_both_values(start_server: Any, tiny_example: Path) -> None:
    """TensorRT first and fp16, on a CPU host with an fp32 graph: the server takes CPU (as it may: the
    providers are a preference) and runs fp32, and the operator says so, field by field."""
    asked = {"providers": ALL_PROVIDERS, "precision": "fp16"}
    srv = start_server(tiny_example, {"runtime": asked})
    srv.wait_ready()
    status = _status(srv.url, _spec(tiny_example, asked))
    cond = _condition(status)
    assert (cond["status"], cond["reason"]) == ("False", "RuntimeDiffersFromSpec"), cond
    assert "spec.runtime.precision: asked fp16, running fp32" in cond["message"]
    assert (
        "spec.runtime.providers[0]: asked TensorrtExecutionProvider, running CPUExecutionProvider"
        in cond["message"]
    )
    fields = {m["field"]: (m["asked"], m["running"], m["pod"]) for m in status["runtime"]["mismatches"]}
    assert fields == {
        "spec.runtime.precision": ("fp16", "fp32", "tiny-0"),
        "spec.runtime.providers[0]": ("TensorrtExecutionProvider", "CPUExecutionProvider", "tiny-0"),
    }
