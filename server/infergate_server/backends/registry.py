"""runtime.backend → the class that serves it, as "module:Class" strings imported only when chosen.

Every backend class is constructed as `Cls(config)`, with `config.model.path` already absolute.
"""

from __future__ import annotations

import importlib

from ..config import BackendName, ServerConfig
from .base import BackendUnavailable, GenerativeBackend, TensorBackend

BACKENDS: dict[BackendName, str] = {
    BackendName.ONNXRUNTIME: "infergate_server.backends.onnxruntime:OnnxRuntimeBackend",
    BackendName.TENSORRT: "infergate_server.backends.tensorrt:TensorRTBackend",
    BackendName.VLLM: "infergate_server.backends.vllm:VllmBackend",
    BackendName.TRANSFORMERS: "infergate_server.backends.transformers:TransformersBackend",
}

Backend = TensorBackend | GenerativeBackend


def backend_class(name: BackendName) -> type[Backend]:
    target = BACKENDS[name]
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"runtime.backend {name.value}: cannot import {module_name}: {exc}"
        ) from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise BackendUnavailable(f"runtime.backend {name.value}: {module_name} has no {cls_name}")
    return cls  # type: ignore[no-any-return]


def create_backend(config: ServerConfig) -> Backend:
    return backend_class(config.runtime.backend)(config)  # type: ignore[call-arg]
