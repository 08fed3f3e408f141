"""TensorRT backend: loads the serialized engine built for this GPU family and TensorRT version.

`model.path` is an engine file or a folder of engines; in a folder the engine is chosen by
`hardware.engine_filename(<stem>, gpu, trt version, precision)` with stem from `runtime.args.engineStem`
(default "model"). Without an NVIDIA GPU or the `tensorrt` package it refuses at start with
BackendUnavailable. Device buffers come from torch (CUDA), imported lazily like tensorrt itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from typing import Any

from ..config import ServerConfig
from ..hardware import Gpu, engine_filename, probe_gpus
from .base import BackendError, BackendInfo, BackendUnavailable, DeclaredTensors, Tensor, TensorSpec

log = logging.getLogger(__name__)

_TRT_TO_OIP = {
    "FLOAT": "FP32",
    "HALF": "FP16",
    "BF16": "BF16",
    "INT8": "INT8",
    "INT32": "INT32",
    "INT64": "INT64",
    "BOOL": "BOOL",
    "UINT8": "UINT8",
}


def select_engine(path: Path, stem: str, gpus: list[Gpu], trt_version: str | None, precision: str) -> Path:
    """The engine to load, or BackendUnavailable saying exactly what is missing."""
    if not gpus:
        raise BackendUnavailable("runtime.backend tensorrt needs an NVIDIA GPU; nvidia-smi found none")
    if trt_version is None:
        raise BackendUnavailable(
            "runtime.backend tensorrt needs the tensorrt package (install infergate[tensorrt])"
        )
    if path.is_file():
        return path
    wanted = engine_filename(stem, gpus[0], trt_version, precision)
    candidate = path / wanted
    if candidate.is_file():
        return candidate
    have = sorted(p.name for p in path.glob("*.engine")) if path.is_dir() else []
    raise BackendUnavailable(
        f"no engine {wanted} in {path} for this GPU and TensorRT (found {have or 'none'})"
    )


def _trt_version() -> str | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return str(trt.__version__)


class TensorRTBackend(DeclaredTensors):
    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._args = dict(config.runtime.args)
        self._engine: Any = None
        self._context: Any = None
        self._info = BackendInfo(runtime="tensorrt (not loaded)", device="none")
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="trt")

    @property
    def info(self) -> BackendInfo:
        return self._info

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    def _load_sync(self) -> None:
        gpus = probe_gpus()
        version = _trt_version()
        engine_path = select_engine(
            Path(self._config.model.path),
            str(self._args.get("engineStem", "model")),
            gpus,
            version,
            self._config.runtime.precision.value,
        )
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise BackendError(
                f"TensorRT {version} could not deserialize {engine_path} (built for another GPU?)"
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        ins: list[TensorSpec] = []
        outs: list[TensorSpec] = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = TensorSpec(
                name,
                _TRT_TO_OIP.get(engine.get_tensor_dtype(name).name, "FP32"),
                tuple(int(d) for d in engine.get_tensor_shape(name)),
            )
            (ins if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(spec)
        self._inputs, self._outputs = tuple(ins), tuple(outs)
        self._info = BackendInfo(
            runtime=f"tensorrt {version}", device=gpus[0].name, details={"engine": engine_path.name}
        )
        log.info("TensorRT %s loaded %s on %s", version, engine_path.name, gpus[0].name)

    async def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._context is None:
            raise BackendError("model not loaded")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run_sync, inputs)

    def _run_sync(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        import torch

        ctx = self._context
        keep: list[Any] = []
        for spec in self._inputs:
            t = torch.from_numpy(inputs[spec.name]).contiguous().cuda()
            keep.append(t)
            ctx.set_input_shape(spec.name, tuple(t.shape))
            ctx.set_tensor_address(spec.name, t.data_ptr())
        outs = {}
        for spec in self._outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            dtype = {"FP16": torch.float16, "INT64": torch.int64, "INT32": torch.int32}.get(
                spec.datatype, torch.float32
            )
            t = torch.empty(shape, dtype=dtype, device="cuda")
            ctx.set_tensor_address(spec.name, t.data_ptr())
            outs[spec.name] = t
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        stream.synchronize()
        return {name: t.cpu().numpy() for name, t in outs.items()}

    async def unload(self) -> None:
        self._context = None
        self._engine = None
        self._executor.shutdown(wait=False, cancel_futures=True)
