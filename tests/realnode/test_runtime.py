"""What runs vs what was asked (issue 18), read by the operator from real pods on the real node (a CPU
host): the tiny example as written runs as asked; the same model asking TensorRT first and fp16 runs
CPU/fp32, and status names both fields with both values."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.realnode.realnode import real_example

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def test_runtime_matches_spec_true_and_false_with_both_values(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess
) -> None:
    models = Models(real_api, real_namespace)
    models.create(real_example("tiny-onnx"))
    asking = real_example("tiny-onnx", rename="tiny-trt")
    asking["spec"]["runtime"]["providers"] = [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    asking["spec"]["runtime"]["precision"] = "fp16"
    models.create(asking)

    ok = models.wait_condition("tiny", "RuntimeMatchesSpec", "True", "RuntimeAsAsked", timeout_s=180)
    runtime = ok["status"]["runtime"]
    assert runtime["provider"] == "CPUExecutionProvider"
    assert (runtime["precision"], runtime["intraOpThreads"], runtime["gpuCount"]) == ("fp32", "1", "0")
    assert runtime["artifactSha256"] == ok["spec"]["model"]["sha256"]
    assert runtime["revision"] == ok["status"]["revision"]

    bad = models.wait_condition(
        "tiny-trt", "RuntimeMatchesSpec", "False", "RuntimeDiffersFromSpec", timeout_s=180
    )
    mismatches = {m["field"]: (m["asked"], m["running"]) for m in bad["status"]["runtime"]["mismatches"]}
    assert mismatches == {
        "spec.runtime.precision": ("fp16", "fp32"),
        "spec.runtime.providers[0]": ("TensorrtExecutionProvider", "CPUExecutionProvider"),
    }
    message = models.condition("tiny-trt", "RuntimeMatchesSpec")["message"]  # type: ignore[index]
    assert "spec.runtime.precision: asked fp16, running fp32" in message
    assert bad["status"]["phase"] == "Ready", "a mismatch is reported, not a reason to stop serving"
