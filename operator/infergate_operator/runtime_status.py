"""What runs vs what the spec asks: `status.runtime` and the RuntimeMatchesSpec condition. Pure.

The servers report their runtime facts in the golden report the operator already reads (`runtime`:
provider, precision, threads, GPUs, digest, versions; see the server's runtime_facts.py). Here the facts
of the current revision's pods are compared with what the spec asks, field by field. Only facts a server
reported count: a fact it reports as unknown is not compared, and no pod read means Unknown, never True.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infergate_operator.builders.configmap import cpu_count
from infergate_operator.conditions import ConditionType, Message, Reason
from infergate_operator.golden import PodRead, PodTarget
from infergate_operator.spec import InferenceModelSpec

Condition = dict[str, Any]
CPU_PROVIDERS = frozenset({"CPUExecutionProvider", "cpu"})
UNKNOWN = "unknown"
VALUE_LIMIT = 128
MAX_MISMATCHES = 16


@dataclass(frozen=True)
class Asked:
    """One thing the spec asks of the runtime: the spec field, the reported fact it is checked against,
    and the value asked (as the fact spells it)."""

    field: str
    fact: str
    value: str


@dataclass(frozen=True)
class Mismatch:
    field: str
    asked: str
    running: str
    pod: str
    """The first pod (by name) that runs something else."""
    pods: int = 1

    def as_status(self) -> dict[str, Any]:
        return {"field": self.field, "asked": self.asked, "running": self.running, "pod": self.pod,
                "pods": self.pods}  # fmt: skip


@dataclass(frozen=True)
class RuntimeObservation:
    """The runtime facts of one revision's pods, compared with the spec."""

    revision: str | None
    pods_reported: int
    pod: str = ""
    """The pod whose facts `facts` are (the first by name)."""
    facts: Mapping[str, str] | None = None
    mismatches: tuple[Mismatch, ...] = ()
    compared: tuple[str, ...] = ()
    """The spec fields that were compared (a fact reported unknown everywhere is not)."""

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"podsReported": self.pods_reported}
        if self.revision is not None:
            status["revision"] = self.revision
        if self.pod:
            status["pod"] = self.pod
        status.update(dict(self.facts or {}))
        if self.mismatches:
            status["mismatches"] = [m.as_status() for m in self.mismatches]
        return status


def gpu_label(product: str) -> str:
    """`NVIDIA A10G` (nvidia-smi) → `NVIDIA-A10G` (the nvidia.com/gpu.product label GPU feature discovery
    writes, which spec.hardware.gpu.product names)."""
    return "-".join(product.split())


def accelerator(provider: str) -> str:
    """cpu for ONNX Runtime's CPU provider and torch/vLLM's cpu device; anything else (CUDA, TensorRT
    providers, cuda:N, a GPU's name from the TensorRT backend) runs on the GPU."""
    if provider in CPU_PROVIDERS or provider.startswith("cpu"):
        return "cpu"
    return "gpu" if provider not in ("none", UNKNOWN) else UNKNOWN


def asked_runtime(spec: InferenceModelSpec) -> tuple[Asked, ...]:
    """What the spec asks that a server can be seen to run, in the order the condition names them."""
    rt, hw = spec.runtime, spec.hardware
    asked = [Asked("spec.runtime.backend", "backend", rt.backend)]
    if rt.backend in ("onnxruntime", "transformers"):
        asked.append(Asked("spec.runtime.precision", "precision", rt.precision))
    if rt.backend == "onnxruntime" and rt.providers:
        asked.append(Asked("spec.runtime.providers[0]", "provider", rt.providers[0]))
    if hw.gpu is not None:
        asked.append(Asked("spec.hardware.gpu", "accelerator", "gpu"))
        asked.append(Asked("spec.hardware.gpu.count", "gpuCount", str(hw.gpu.count)))
        if hw.gpu.product:
            asked.append(Asked("spec.hardware.gpu.product", "gpuProduct", hw.gpu.product))
    if rt.backend in ("onnxruntime", "transformers"):
        if rt.threads.intra_op:
            asked.append(Asked("spec.runtime.threads.intraOp", "intraOpThreads", str(rt.threads.intra_op)))
        elif hw.cpu:  # the operator renders intraOp from hardware.cpu (builders/configmap.py)
            asked.append(Asked("spec.hardware.cpu", "intraOpThreads", str(cpu_count(hw.cpu))))
    if spec.model.sha256:
        asked.append(Asked("spec.model.sha256", "artifactSha256", spec.model.sha256))
    return tuple(asked)


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return UNKNOWN
    return str(value)[:VALUE_LIMIT] or UNKNOWN


def facts_of(report: Mapping[str, Any]) -> dict[str, str] | None:
    """The flat facts of one server's report (`runtime`), as strings; None when it reports none."""
    runtime = report.get("runtime")
    if not isinstance(runtime, Mapping):
        return None
    gpus = runtime.get("gpus")
    first = gpus[0] if isinstance(gpus, list) and gpus and isinstance(gpus[0], Mapping) else {}
    provider = _text(runtime.get("provider"))
    facts = {
        "backend": _text(runtime.get("backend")),
        "runtime": _text(runtime.get("runtime")),
        "provider": provider,
        "accelerator": accelerator(provider) if provider != UNKNOWN else UNKNOWN,
        "precision": _text(runtime.get("precision")),
        "intraOpThreads": _text(runtime.get("intraOpThreads")),
        "interOpThreads": _text(runtime.get("interOpThreads")),
        "gpuCount": _text(runtime.get("gpuCount")),
        "gpuProduct": gpu_label(_text(first.get("product"))) if first.get("product") else "none",
        "gpuMemoryMiB": _text(first.get("memoryMiB")),
        "artifactSha256": _text(runtime.get("artifactSha256")),
        "server": _text(runtime.get("server")),
    }
    return facts


def observe_runtime(
    targets: Iterable[PodTarget], reads: Mapping[str, PodRead], revision: str | None, asked: Iterable[Asked]
) -> RuntimeObservation | None:
    """The reported facts of the targets' reads compared with `asked`; None while no read was made."""
    reported: list[tuple[str, dict[str, str]]] = []
    any_read = False
    for target in targets:
        read = reads.get(target.pod)
        if read is None or read.address != target.address:
            continue
        any_read = True
        facts = facts_of(read.report) if read.report is not None else None
        if facts is not None:
            reported.append((target.pod, facts))
    if not any_read:
        return None
    if not reported:
        return RuntimeObservation(revision, 0)
    reported.sort(key=lambda item: item[0])
    mismatches: list[Mismatch] = []
    compared: list[str] = []
    for want in asked:
        seen = [
            (pod, facts[want.fact]) for pod, facts in reported if facts.get(want.fact, UNKNOWN) != UNKNOWN
        ]
        if not seen:
            continue
        compared.append(want.field)
        wrong = [(pod, value) for pod, value in seen if value != want.value]
        if wrong:
            pod, value = wrong[0]
            mismatches.append(Mismatch(want.field, want.value, value, pod, len(wrong)))
    pod, facts = reported[0]
    shown = {k: v for k, v in facts.items() if k != "accelerator"}
    return RuntimeObservation(
        revision, len(reported), pod, shown, tuple(mismatches[:MAX_MISMATCHES]), tuple(compared)
    )


def runtime_condition(observation: RuntimeObservation | None, revision: str | None) -> Condition:
    kind = str(ConditionType.RUNTIME_MATCHES_SPEC)
    rev = revision or "?"
    if observation is None or observation.pods_reported == 0:
        text = Message.RUNTIME_NOT_YET_REPORTED.format(revision=rev)
        return {"type": kind, "status": "Unknown", "reason": str(Reason.RUNTIME_NOT_YET_REPORTED),
                "message": text}  # fmt: skip
    if observation.mismatches:
        parts = [
            Message.RUNTIME_MISMATCH.format(
                field=m.field, asked=m.asked, running=m.running, pod=m.pod, pods=m.pods
            )
            for m in observation.mismatches
        ]
        return {"type": kind, "status": "False", "reason": str(Reason.RUNTIME_DIFFERS_FROM_SPEC),
                "message": "; ".join(parts)}  # fmt: skip
    facts = observation.facts or {}
    text = Message.RUNTIME_AS_ASKED.format(
        pods=observation.pods_reported,
        revision=rev,
        runtime=facts.get("runtime", UNKNOWN),
        provider=facts.get("provider", UNKNOWN),
        precision=facts.get("precision", UNKNOWN),
        fields=", ".join(observation.compared) or "nothing comparable",
    )
    return {"type": kind, "status": "True", "reason": str(Reason.RUNTIME_AS_ASKED), "message": text}


def runtime_status(old: Any, observation: RuntimeObservation | None) -> dict[str, Any] | None:
    """status.runtime: the newest facts read; the last written kept while nothing new was read."""
    if observation is None or observation.pods_reported == 0:
        return dict(old) if isinstance(old, Mapping) else None
    return observation.as_status()


__all__ = [
    "Asked",
    "Mismatch",
    "RuntimeObservation",
    "asked_runtime",
    "facts_of",
    "gpu_label",
    "observe_runtime",
    "runtime_condition",
    "runtime_status",
]
