"""What runs vs what was asked (issue 18): RuntimeMatchesSpec and status.runtime from servers' reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from infergate_operator.golden import PodRead, PodTarget, report_key
from infergate_operator.observed import Observed
from infergate_operator.runtime_status import (
    accelerator,
    asked_runtime,
    gpu_label,
    observe_runtime,
    runtime_condition,
)
from infergate_operator.spec import InferenceModelStatus
from infergate_operator.status import compute_status, transitions
from infergate_server.backends.base import TensorSpec
from infergate_server.backends.onnxruntime import observed_precision
from infergate_server.hardware import GpuFacts, parse_gpu_facts

from tests.unit.igm import SHA, make_model

T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def runtime(**over: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "backend": "onnxruntime",
        "runtime": "onnxruntime 1.23.2",
        "provider": "CPUExecutionProvider",
        "precision": "fp32",
        "intraOpThreads": 2,
        "interOpThreads": 0,
        "cpus": 32,
        "gpuCount": 0,
        "gpus": [],
        "artifactSha256": SHA,
        "server": "infergate-server 0.1.0",
    }
    facts.update(over)
    return facts


def reads(*facts: dict[str, Any] | None) -> tuple[tuple[PodTarget, ...], dict[str, PodRead]]:
    targets, got = [], {}
    for i, f in enumerate(facts):
        pod, address = f"m-{i}", f"http://10.0.0.{i}:8080"
        targets.append(PodTarget(pod, address, ready=True))
        report: dict[str, Any] = {"phase": "Ready", "cases": []}
        if f is not None:
            report["runtime"] = f
        got[pod] = PodRead(pod, address, 0.0, report)
    return tuple(targets), got


def status_of(spec_model: Any, *facts: dict[str, Any] | None) -> dict[str, Any]:
    targets, got = reads(*facts)
    observation = observe_runtime(targets, got, "rev1", asked_runtime(spec_model.spec()))
    status = compute_status(None, Observed(name="m", revision="rev1", runtime=observation), 1, T0)
    InferenceModelStatus.model_validate(status)  # the CRD's status schema takes it
    return status


def cond(status: dict[str, Any]) -> tuple[str, str, str]:
    c = next(c for c in status["conditions"] if c["type"] == "RuntimeMatchesSpec")
    return c["status"], c["reason"], c["message"]


def test_running_as_asked_is_true_and_names_what_was_compared() -> None:
    status = status_of(make_model().cpu(2), runtime(), runtime())
    state, reason, message = cond(status)
    assert (state, reason) == ("True", "RuntimeAsAsked")
    assert "2 pod(s) of revision rev1 run onnxruntime 1.23.2 on CPUExecutionProvider at fp32" in message
    assert "spec.hardware.cpu" in message
    assert "spec.model.sha256" in message
    assert status["runtime"]["podsReported"] == 2
    assert status["runtime"]["intraOpThreads"] == "2"


def test_gpu_asked_cpu_running_names_field_and_both_values() -> None:
    model = make_model().gpus(1, "NVIDIA-H100-80GB-HBM3").patch({"runtime": {"precision": "fp16"}})
    state, reason, message = cond(status_of(model, runtime()))
    assert (state, reason) == ("False", "RuntimeDiffersFromSpec")
    assert "spec.runtime.precision: asked fp16, running fp32 (pod m-0, 1 pod(s))" in message
    assert "spec.hardware.gpu: asked gpu, running cpu" in message
    assert "spec.hardware.gpu.count: asked 1, running 0" in message
    assert "spec.hardware.gpu.product: asked NVIDIA-H100-80GB-HBM3, running none" in message


def test_other_gpu_product_and_thread_count() -> None:
    model = make_model().gpus(1, "NVIDIA-A10G").patch({"runtime": {"threads": {"intraOp": 4}}})
    on_l4 = runtime(
        provider="CUDAExecutionProvider",
        gpuCount=1,
        gpus=[{"product": "NVIDIA L4", "memoryMiB": 23034}],
        intraOpThreads=32,
    )
    status = status_of(model, runtime(provider="CUDAExecutionProvider", gpuCount=1,
                                      gpus=[{"product": "NVIDIA A10G", "memoryMiB": 23028}],
                                      intraOpThreads=4), on_l4)  # fmt: skip
    _, _, message = cond(status)
    assert "spec.hardware.gpu.product: asked NVIDIA-A10G, running NVIDIA-L4 (pod m-1, 1 pod(s))" in message
    assert "spec.runtime.threads.intraOp: asked 4, running 32 (pod m-1" in message
    assert status["runtime"]["gpuMemoryMiB"] == "23028"  # the first pod's facts


def test_unknown_facts_are_not_compared_and_unreported_is_unknown() -> None:
    model = make_model().patch({"runtime": {"precision": "fp16"}})
    state, _, message = cond(status_of(model, runtime(precision="unknown")))
    assert state == "True"
    assert "spec.runtime.precision" not in message
    state, reason, _ = cond(status_of(model, None))
    assert (state, reason) == ("Unknown", "RuntimeNotYetReported")
    targets, _ = reads(runtime())
    unread = {"m-0": PodRead("m-0", targets[0].address, 0.0, None, "connection refused")}
    observation = observe_runtime(targets, unread, "rev1", asked_runtime(model.spec()))
    assert runtime_condition(observation, "rev1")["status"] == "Unknown"


def test_a_changed_fact_is_a_new_report_key_and_an_event() -> None:
    _targets, before = reads(runtime())
    _, after = reads(runtime(provider="CUDAExecutionProvider"))
    assert report_key(before["m-0"]) != report_key(after["m-0"])
    model = make_model().patch({"runtime": {"providers": ["CUDAExecutionProvider"]}})
    first = status_of(model, runtime(provider="CUDAExecutionProvider"))
    second = status_of(model, runtime())
    moved = [t for t in transitions(first, second) if t.type == "RuntimeMatchesSpec"]
    assert moved
    assert moved[0].event_type == "Warning"


def test_kept_while_nothing_new_is_read() -> None:
    first = status_of(make_model(), runtime())
    again = compute_status(first, Observed(name="m", revision="rev1"), 1, T0)
    assert again["runtime"] == first["runtime"]


def test_gpu_label_matches_feature_discovery() -> None:
    assert gpu_label("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"


def test_every_backends_device_is_classed() -> None:
    assert [accelerator(p) for p in ("CPUExecutionProvider", "cpu", "CUDAExecutionProvider", "cuda:0",
                                     "NVIDIA H100 80GB HBM3", "none")] == ["cpu", "cpu", "gpu", "gpu", "gpu",
                                                                          "unknown"]  # fmt: skip


def test_nvidia_smi_memory_parse() -> None:
    text = "NVIDIA A10G, 23028\nNVIDIA H100 80GB HBM3, 81559\n\n"
    assert parse_gpu_facts(text) == [GpuFacts("NVIDIA A10G", 23028), GpuFacts("NVIDIA H100 80GB HBM3", 81559)]
    assert parse_gpu_facts("weird, [N/A]") == [GpuFacts("weird", None)]


def test_ort_precision_is_what_the_session_took() -> None:
    fp32 = (TensorSpec("y", "FP32", (-1, 3)),)
    fp16 = (TensorSpec("y", "FP16", (-1, 3)),)
    trt = {"TensorrtExecutionProvider": {"trt_fp16_enable": "1", "trt_int8_enable": "0"}}
    assert observed_precision("CPUExecutionProvider", {}, fp32) == "fp32"
    assert observed_precision("CUDAExecutionProvider", trt, fp32) == "fp32"
    assert observed_precision("TensorrtExecutionProvider", trt, fp32) == "fp16"
    assert observed_precision("CPUExecutionProvider", {}, fp16) == "fp16"
    assert observed_precision("CPUExecutionProvider", {}, (TensorSpec("i", "INT64", (1,)),)) == "unknown"
