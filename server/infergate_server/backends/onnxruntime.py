"""ONNX Runtime backend: providers TensorRT → CUDA → CPU as the host has them, deterministic options.

`onnxruntime` is imported only here, inside `load`. A single-file artifact (model.path a file, its SHA-256
pinned) is loaded from its bytes, so ONNX Runtime has no folder to resolve external data against: a model
whose weights sit in a file beside it, outside the digest, is refused. Weights in external data need a
directory artifact (model.path the directory, its manifest digest pinned, one top-level *.onnx file).

`runtime.args` (all optional):
  sessionConfig: {key: value}       extra SessionOptions config entries
  providerOptions: {Provider: {..}} per-provider options, merged over ours
  allowSpinning: bool               intra-op thread spinning (default on; off saves CPU when idle)
  inlineMaxMs: float                when the queue is otherwise empty, run a batch on the event loop's thread
                                    if it should take at most this long (default 3; 0 = never): recent
                                    calls' time, scaled up by this batch's elements over theirs
  engineCacheDir: path              TensorRT EP engine cache root. Engines in it are loaded as they are,
                                    unverified: name only a folder nothing but this server writes. The
                                    default is a fresh private folder per process (engines built again at
                                    each start), never one beside the model, which the digest does not cover
  debugDelayMs / debugDelayAfterCalls: TEST ONLY. Sleep this long inside every backend call after the
      first N calls (warmup and golden calls count), to model a slow or hung runtime.
  debugPerturbBy / debugPerturbAfterCalls: TEST ONLY. Add this much to every float output after the
      first N calls, to model a replica (or a candidate) that goes wrong after passing its golden set.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Precision, ServerConfig
from ..datatypes import OIP_TO_NUMPY, ORT_TO_OIP
from ..hardware import gpu_family, probe_gpus
from .base import (
    BackendError,
    BackendInfo,
    BackendInputError,
    BackendUnavailable,
    DeclaredTensors,
    Tensor,
    TensorSpec,
)

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str], requested: list[str] | None) -> list[str]:
    """The providers to ask for, best first: the requested (or preferred) ones the host has."""
    wanted = requested if requested else list(PREFERRED_PROVIDERS)
    chosen = [p for p in wanted if p in available]
    if not chosen:
        raise BackendUnavailable(f"none of the providers {wanted} is available here (host has {available})")
    return chosen


def _number_arg(args: dict[str, Any], key: str, default: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BackendError(f"runtime.args.{key} must be a number >= 0, got {value!r}")
    return float(value)


def _model_source(path: Path) -> str | bytes:
    """A file's bytes (already verified), or the path of a directory artifact's one top-level .onnx."""
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        found = sorted(p for p in path.glob("*.onnx") if p.is_file())
        if len(found) != 1:
            raise BackendError(
                f"{path}: a directory artifact needs exactly one top-level .onnx, found {len(found)}"
            )
        return str(found[0])
    raise BackendError(f"model file {path} does not exist")


def _as_text(inputs: dict[str, Tensor], names: tuple[str, ...]) -> dict[str, Tensor]:
    """BYTES inputs as str: ONNX Runtime turns a Python bytes object into its repr ("b'...'")."""
    out = dict(inputs)
    for name in names:
        arr = inputs.get(name)
        if arr is None or arr.dtype.kind != "O":
            continue
        text = np.empty(arr.shape, dtype=object)
        try:
            text.ravel()[:] = [x.decode("utf-8") if isinstance(x, bytes) else x for x in arr.ravel()]
        except UnicodeDecodeError:
            raise BackendInputError(f"input '{name}': a string tensor takes UTF-8 text") from None
        out[name] = text
    return out


def _elements(inputs: dict[str, Tensor]) -> int:
    return sum([a.size for a in inputs.values()])


_FLOAT_PRECISION = {"FP16": "fp16", "BF16": "bf16", "FP32": "fp32", "FP64": "fp64"}


def _enabled(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def observed_precision(
    provider: str, provider_options: dict[str, dict[str, Any]], outputs: tuple[TensorSpec, ...]
) -> str:
    """The precision the session computes in, from what the session itself reports: TensorRT's int8 or
    fp16 switches as the session took them (only where TensorRT runs); otherwise the graph's own float
    type (ONNX Runtime runs a graph at the types it declares: asking fp16 of an fp32 graph on CUDA or CPU
    changes nothing). `unknown` for a graph with no float output."""
    if provider == "TensorrtExecutionProvider":
        trt = provider_options.get(provider, {})
        if _enabled(trt.get("trt_int8_enable")):
            return "int8"
        if _enabled(trt.get("trt_fp16_enable")):
            return "fp16"
    found = [_FLOAT_PRECISION[o.datatype] for o in outputs if o.datatype in _FLOAT_PRECISION]
    return found[0] if found else "unknown"


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or ()))


class OnnxRuntimeBackend(DeclaredTensors):
    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._path = Path(config.model.path)
        self._args = dict(config.runtime.args)
        self._session: Any = None
        self._output_names: list[str] = []
        self._info = BackendInfo(runtime="onnxruntime (not loaded)", device="none")
        # Exactly as many threads as batches may run: the batcher's staged batch waits here, and
        # starts the moment a thread is free (golden calls queue here too, like any other call).
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.runtime.max_concurrent_batches, thread_name_prefix="ort"
        )
        self._calls = 0
        self._recent_call_s = float("inf")  # moving average of session.run wall time
        self._cache_dir: Path | None = None
        self._string_inputs: tuple[str, ...] = ()
        self._recent_elements = 1.0  # moving average of the input elements those calls carried
        self._inline_budget_s = _number_arg(self._args, "inlineMaxMs", 3.0) / 1000.0
        self._delay_s = _number_arg(self._args, "debugDelayMs", 0) / 1000.0
        self._delay_after = int(_number_arg(self._args, "debugDelayAfterCalls", 0))
        self._perturb = _number_arg(self._args, "debugPerturbBy", 0)
        self._perturb_after = int(_number_arg(self._args, "debugPerturbAfterCalls", 0))
        if self._perturb:
            log.warning("runtime.args.debugPerturbBy is set: outputs are wrong on purpose (tests only)")

    @property
    def info(self) -> BackendInfo:
        return self._info

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load_sync)

    def _load_sync(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                f"onnxruntime is not installed ({exc}); install infergate[onnx]"
            ) from None
        model: str | bytes = _model_source(self._path)
        rt = self._config.runtime
        so = ort.SessionOptions()
        so.use_deterministic_compute = True
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = rt.threads.intra_op
        so.inter_op_num_threads = rt.threads.inter_op
        so.log_severity_level = 3
        if not self._args.get("allowSpinning", True):
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for key, value in dict(self._args.get("sessionConfig", {})).items():
            so.add_session_config_entry(str(key), str(value))
        available = list(ort.get_available_providers())
        providers = choose_providers(available, rt.providers)
        options = [self._provider_options(p) for p in providers]
        try:
            session = ort.InferenceSession(
                model, sess_options=so, providers=providers, provider_options=options
            )
        except Exception as exc:  # ORT raises its own exception types for bad graphs
            hint = ""
            if isinstance(model, bytes) and ("xternal data" in str(exc) or "model_path" in str(exc)):
                hint = (
                    " (the model keeps weights in external data, which a single-file artifact's digest "
                    "does not cover: pin the directory instead)"
                )
            raise BackendError(f"onnxruntime could not load {self._path}{hint}: {exc}") from exc
        used = session.get_providers()
        self._session = session
        self._inputs = tuple(
            TensorSpec(i.name, ORT_TO_OIP.get(i.type, i.type), _dims(i.shape)) for i in session.get_inputs()
        )
        all_outputs = {
            o.name: TensorSpec(o.name, ORT_TO_OIP.get(o.type, o.type), _dims(o.shape))
            for o in session.get_outputs()
        }
        wanted = self._config.model.outputs or list(all_outputs)
        unknown = [n for n in wanted if n not in all_outputs]
        if unknown:
            raise BackendError(f"model.outputs names {unknown}, the model has {sorted(all_outputs)}")
        self._outputs = tuple(all_outputs[n] for n in wanted)
        self._string_inputs = tuple(i.name for i in self._inputs if i.datatype == "BYTES")
        self._output_names = list(wanted)
        self._info = BackendInfo(
            runtime=f"onnxruntime {ort.__version__}",
            device=used[0],
            details={
                "precision": observed_precision(used[0], session.get_provider_options(), self._outputs),
                "providers": ",".join(used),
                "available_providers": ",".join(available),
                # As the session holds them (0: ONNX Runtime's default, one thread per physical core).
                "intra_op_threads": str(session.get_session_options().intra_op_num_threads),
                "inter_op_threads": str(session.get_session_options().inter_op_num_threads),
                "deterministic": "true",
            },
        )
        log.info(
            "onnxruntime %s loaded %s on %s (providers %s)", ort.__version__, self._path.name, used[0], used
        )
        self._warmup()

    def _provider_options(self, provider: str) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if provider == "CUDAExecutionProvider":
            # Heuristic/exhaustive cuDNN search may pick different kernels run to run; TF32 changes results.
            opts = {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"}
        elif provider == "TensorrtExecutionProvider":
            gpus = probe_gpus()
            family = gpu_family(gpus[0]) if gpus else "unknown-gpu"
            root = Path(self._args.get("engineCacheDir") or self._private_cache())
            opts = {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(root / family),
                "trt_fp16_enable": str(self._config.runtime.precision is Precision.FP16),
                "trt_int8_enable": str(self._config.runtime.precision is Precision.INT8),
            }
        extra = dict(self._args.get("providerOptions", {})).get(provider, {})
        opts.update({str(k): str(v) for k, v in dict(extra).items()})
        return opts

    def _private_cache(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = Path(tempfile.mkdtemp(prefix="infergate-trt-cache-"))
        return self._cache_dir

    def _warmup(self) -> None:
        started = time.perf_counter()
        try:
            self._warmup_run()
        finally:
            self.warmup_seconds = time.perf_counter() - started

    def _warmup_run(self) -> None:
        feed = {}
        for spec in self._inputs:
            shape = [d if d >= 0 else (1 if i == 0 else 8) for i, d in enumerate(spec.shape)]
            feed[spec.name] = np.zeros(shape, dtype=OIP_TO_NUMPY.get(spec.datatype, np.float32))
        try:
            self._run_sync(feed)
        except Exception as exc:
            log.warning("warmup run failed (the golden check will tell whether the model works): %s", exc)

    async def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._session is None:
            raise BackendError("model not loaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_sync, inputs)

    def infer_inline(self, inputs: dict[str, Tensor]) -> dict[str, Tensor] | None:
        # The test-only delay models a hung runtime: that must stay off the event loop (504 needs it).
        if self._session is None or self._delay_s or self._recent_call_s > self._inline_budget_s:
            return None
        # Decided per call: the average says how long calls of the usual size take, and this one may
        # be far larger (a client can send one request of maxBatchSize long rows).
        elements = _elements(inputs)
        if elements > self._recent_elements and (
            self._recent_call_s * elements / self._recent_elements > self._inline_budget_s
        ):
            return None
        return self._run_sync(inputs, elements)

    def _run_sync(self, inputs: dict[str, Tensor], elements: int | None = None) -> dict[str, Tensor]:
        self._calls += 1
        if self._delay_s and self._calls > self._delay_after:
            time.sleep(self._delay_s)
        if self._string_inputs:
            inputs = _as_text(inputs, self._string_inputs)
        t0 = time.perf_counter()
        try:
            values = self._session.run(self._output_names, inputs)
        except Exception as exc:
            if type(exc).__name__ == "InvalidArgument":  # ORT's status for a value out of range
                raise BackendInputError(
                    "the model refused this input (invalid argument): a value such as an index or "
                    "token id is outside the range it accepts"
                ) from exc
            raise BackendError(f"onnxruntime run failed: {exc}") from exc
        took = time.perf_counter() - t0
        n = float(elements if elements is not None else _elements(inputs)) or 1.0
        recent = self._recent_call_s
        if recent == float("inf"):
            self._recent_call_s, self._recent_elements = took, n
        else:
            self._recent_call_s = 0.8 * recent + 0.2 * took
            self._recent_elements = 0.8 * self._recent_elements + 0.2 * n
        if self._perturb and self._calls > self._perturb_after:
            values = [v + v.dtype.type(self._perturb) if v.dtype.kind == "f" else v for v in values]
        return dict(zip(self._output_names, values, strict=True))

    async def unload(self) -> None:
        self._session = None
        self._executor.shutdown(wait=False, cancel_futures=True)
