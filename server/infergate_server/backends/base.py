"""The contract every backend fulfils; the data plane and golden checks speak only to these protocols."""

# ruff: noqa: N818  (KServe-style names: the status reads better than an Error suffix)

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Tensor = npt.NDArray[np.generic]


@dataclass(frozen=True)
class TensorSpec:
    """A declared model input or output, in Open Inference Protocol v2 terms."""

    name: str
    datatype: str  # OIP v2 datatype: FP32, INT64, BYTES, ...
    shape: tuple[int, ...]  # -1 marks a dynamic dimension


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend reports about itself: it goes into metadata, logs and provenance."""

    runtime: str  # e.g. "onnxruntime 1.32.0"
    device: str  # e.g. "CPUExecutionProvider", "cuda:0"
    details: dict[str, str] = field(default_factory=dict)


class BackendError(Exception):
    """A backend could not load or run; the message is meant for operators reading logs."""


class BackendInputError(BackendError):
    """The runtime refused a value the request carried (a token id outside the vocabulary): the
    client's mistake, though only the runtime could see it. The message must carry no internals."""


class BackendUnavailable(BackendError):
    """The host lacks what this backend needs (no GPU, no TensorRT, package not installed)."""


class DeclaredTensors:
    """`inputs` and `outputs` for a tensor backend, from the specs it sets when it loads."""

    _inputs: tuple[TensorSpec, ...] = ()
    _outputs: tuple[TensorSpec, ...] = ()

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs


@runtime_checkable
class TensorBackend(Protocol):
    """A backend that maps named input tensors to named output tensors (ONNX, TensorRT, transformers)."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def info(self) -> BackendInfo: ...

    async def load(self) -> None: ...

    async def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run one batch; the first dimension of every input is the batch dimension."""
        ...

    async def unload(self) -> None: ...


@runtime_checkable
class InlineCapable(Protocol):
    """A tensor backend whose short calls may run on the caller's (event loop's) thread.

    The batcher asks only when nothing else is queued or running: then handing the batch to a worker
    thread and its result back costs two thread wake-ups (about 0.15 ms here) and buys nothing.
    """

    def infer_inline(self, inputs: dict[str, Tensor]) -> dict[str, Tensor] | None:
        """The outputs, or None when this call should go to the worker thread after all (a model whose
        recent calls took longer than the inline budget, a backend not loaded)."""
        ...


@dataclass(frozen=True)
class Completion:
    """One greedy completion, as a golden prompt compares it."""

    text: str
    token_ids: tuple[int, ...]


@runtime_checkable
class GenerativeBackend(Protocol):
    """A backend whose data path is an OpenAI-compatible server (vLLM) or a causal LM (transformers)."""

    @property
    def info(self) -> BackendInfo: ...

    async def load(self) -> None: ...

    async def complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        """Greedy (temperature 0) completion with a fixed seed."""
        ...

    async def unload(self) -> None: ...


@dataclass(frozen=True)
class Liveness:
    """What a backend that runs outside this process (a supervised child) says about itself now."""

    alive: bool
    generation: int  # bumps on every (re)start: a new process must pass golden again before it is served
    reason: str  # e.g. "vLLM pid 123 Running", "vLLM Restarting: exited with code -9"


@runtime_checkable
class Supervised(Protocol):
    """A backend whose process can die and come back while the server lives (vLLM's child). In-process
    backends (ONNX Runtime, transformers, TensorRT) do not implement it: they live and die with us."""

    def liveness(self) -> Liveness:
        """Cheap and local (no I/O): readiness probes call it on every request."""
        ...

    def change_event(self) -> asyncio.Event:
        """An event set at the first change of state (died, restarting, running again, failed, stopped
        answering) after this call; each change arms a new one, so a change while the caller is busy is
        not lost."""
        ...
