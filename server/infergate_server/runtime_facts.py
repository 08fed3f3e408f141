"""What actually runs: the facts a loaded server observed about itself, as opposed to what it was asked.

Pure: built from what the backend reported after loading (`BackendInfo`), the digest this server computed,
and the GPUs `nvidia-smi` listed. The same dict goes into `/v2/models/{m}` metadata, the golden report the
operator reads (`runtime`), and one `inference_runtime_info` series. A fact the backend did not report is
"unknown", never the configured value standing in for it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .backends.base import BackendInfo
from .config import ServerConfig
from .hardware import GpuFacts

UNKNOWN = "unknown"


@dataclass(frozen=True)
class RuntimeFacts:
    backend: str
    runtime: str
    """Runtime name and version(s), e.g. `onnxruntime 1.23.2`."""
    provider: str
    """The execution provider or device doing the work, e.g. CPUExecutionProvider, cuda:0."""
    precision: str
    intra_op_threads: int | None
    inter_op_threads: int | None
    gpus: tuple[GpuFacts, ...] = ()
    artifact_sha256: str | None = None
    server: str = f"infergate-server {__version__}"
    python: str = field(default_factory=platform.python_version)
    cpus: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    """CPUs this process may run on."""

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "runtime": self.runtime,
            "provider": self.provider,
            "precision": self.precision,
            "intraOpThreads": self.intra_op_threads,
            "interOpThreads": self.inter_op_threads,
            "cpus": self.cpus,
            "gpuCount": len(self.gpus),
            "gpus": [{"product": g.name, "memoryMiB": g.memory_mib} for g in self.gpus],
            "artifactSha256": self.artifact_sha256,
            "server": self.server,
            "python": self.python,
        }

    def parameters(self) -> dict[str, str]:
        """Flat string values, for OIP v2 model metadata `parameters`."""
        gpu = self.gpus[0] if self.gpus else None
        return {
            "provider": self.provider,
            "precision": self.precision,
            "intraOpThreads": _text(self.intra_op_threads),
            "interOpThreads": _text(self.inter_op_threads),
            "cpus": str(self.cpus),
            "gpuCount": str(len(self.gpus)),
            "gpuProduct": gpu.name if gpu else "",
            "gpuMemoryMiB": _text(gpu.memory_mib) if gpu else "",
            "server": self.server,
        }

    def labels(self) -> dict[str, str]:
        """Labels of the one `inference_runtime_info` series: a handful of values per process."""
        gpu = self.gpus[0] if self.gpus else None
        return {
            "backend": self.backend,
            "runtime": self.runtime,
            "provider": self.provider,
            "precision": self.precision,
            "intra_op_threads": _text(self.intra_op_threads),
            "gpu": gpu.name if gpu else "",
            "gpu_memory_mib": _text(gpu.memory_mib) if gpu else "",
            "sha256": self.artifact_sha256 or "",
        }


def _text(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def runtime_facts(
    config: ServerConfig, info: BackendInfo, digest: str | None, gpus: list[GpuFacts]
) -> RuntimeFacts:
    details = info.details
    return RuntimeFacts(
        backend=config.runtime.backend.value,
        runtime=info.runtime,
        provider=info.device,
        precision=details.get("precision", UNKNOWN),
        intra_op_threads=_int(details.get("intra_op_threads")),
        inter_op_threads=_int(details.get("inter_op_threads")),
        gpus=tuple(gpus),
        artifact_sha256=digest,
    )


__all__ = ["UNKNOWN", "RuntimeFacts", "runtime_facts"]
