"""What accelerator the host has, and the names that per-hardware caches and engines carry.

Pure naming functions plus one probe (`nvidia-smi`); backends share it without importing each other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "9.0"


def query_nvidia_smi(fields: str, timeout_s: float = 10.0, units: bool = True) -> str:
    """`nvidia-smi --query-gpu=<fields>` as CSV without header; empty when there is no driver or no GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ""
    csv_format = "csv,noheader" if units else "csv,noheader,nounits"
    try:
        return subprocess.run(
            [exe, f"--query-gpu={fields}", f"--format={csv_format}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def probe_gpus(timeout_s: float = 10.0) -> list[Gpu]:
    """NVIDIA GPUs visible to this process; empty when there is no driver or no GPU."""
    return parse_nvidia_smi(query_nvidia_smi("name,compute_cap", timeout_s))


def parse_nvidia_smi(text: str) -> list[Gpu]:
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] and re.fullmatch(r"\d+\.\d+", parts[1]):
            gpus.append(Gpu(parts[0], parts[1]))
    return gpus


def gpu_family(gpu: Gpu) -> str:
    """A file-name-safe family: the SM version plus the product, e.g. `sm90-h100-80gb-hbm3`.

    Engines are valid only for the exact SM version; the product part keeps engines tuned for different
    SKUs of one architecture (A10G vs A10) apart, since TensorRT tactics depend on them.
    """
    sm = "sm" + gpu.compute_capability.replace(".", "")
    product = gpu.name.lower().removeprefix("nvidia").strip()
    product = re.sub(r"[^a-z0-9]+", "-", product).strip("-") or "unknown"
    return f"{sm}-{product}"


def trt_version_tag(version: str) -> str:
    """`10.3.0.26` → `trt10.3.0`: engines are not portable across TensorRT patch releases."""
    parts = re.findall(r"\d+", version)
    if len(parts) < 2:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return "trt" + ".".join([*parts, "0"][:3])


def engine_filename(stem: str, gpu: Gpu, trt_version: str, precision: str) -> str:
    """The serialized engine's file name for this model, hardware, TensorRT version and precision."""
    return f"{stem}.{gpu_family(gpu)}.{trt_version_tag(trt_version)}.{precision}.engine"


@dataclass(frozen=True)
class GpuFacts:
    """A GPU as this process sees it: its product name and memory, for runtime facts (not for naming)."""

    name: str  # e.g. "NVIDIA A10G"
    memory_mib: int | None


def probe_gpu_facts(timeout_s: float = 10.0) -> list[GpuFacts]:
    """NVIDIA GPUs visible to this process with their memory; empty when there is no driver or no GPU."""
    return parse_gpu_facts(query_nvidia_smi("name,memory.total", timeout_s, units=False))


def parse_gpu_facts(text: str) -> list[GpuFacts]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` lines → GpuFacts."""
    gpus = []
    for line in text.splitlines():
        name, _, memory = (p.strip() for p in line.rpartition(","))
        if not name:
            continue
        gpus.append(GpuFacts(name, int(memory) if memory.isdigit() else None))
    return gpus
