"""transformers: the torch fallback for Hugging Face models, on CUDA when torch sees a GPU, else on CPU.

`TransformersBackend(config)` gives, by model.format:
- `hf-causal-lm`: a GenerativeBackend; `complete()` is greedy decoding with the seed set, decoded the way
  vLLM decodes (special tokens skipped), so one golden set serves both backends;
- `hf-transformers`: a TensorBackend over an encoder (`AutoModel`): INT64 `input_ids`, `attention_mask`
  (and `token_type_ids` when the model takes them) → FP32 `last_hidden_state` [batch, tokens, hidden] and
  `mean_pooled` [batch, hidden] (the attention-masked mean, as sentence-transformers pools).

torch and transformers are imported in load(), never at module import. Every torch call runs on one
worker thread of the backend's own executor (torch parallelises inside each call), never on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import inspect
import logging
import os
from typing import Any

import numpy as np

from ..config import ModelFormat, Precision, ServerConfig
from .base import (
    BackendError,
    BackendInfo,
    BackendUnavailable,
    Completion,
    DeclaredTensors,
    Tensor,
    TensorSpec,
)

log = logging.getLogger(__name__)

TORCH_DTYPES = {Precision.FP32: "float32", Precision.FP16: "float16", Precision.BF16: "bfloat16"}
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TransformersBackend:
    """Base of the two shapes; constructing it returns the one that model.format asks for."""

    def __new__(cls, config: ServerConfig) -> TransformersBackend:
        if cls is TransformersBackend:
            if config.model.format is ModelFormat.HF_CAUSAL_LM:
                cls = CausalLMBackend
            elif config.model.format is ModelFormat.HF_TRANSFORMERS:
                cls = EncoderBackend
            else:
                raise BackendError(
                    f"model.format {config.model.format.value}: the transformers backend serves "
                    "hf-causal-lm and hf-transformers"
                )
        return super().__new__(cls)

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        self._device = "cpu"
        self._versions = ""
        self._model: Any = None
        self._observed: dict[str, str] = {}

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(
            runtime=self._versions or "transformers (not loaded)",
            device=self._device,
            details={"format": self.config.model.format.value, **self._observed},
        )

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def load(self) -> None:
        try:
            await self._run(self._load_sync)
        except ImportError as exc:
            raise BackendUnavailable(
                f"runtime.backend transformers: {exc} (the `transformers` extra)"
            ) from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"model.path {self.config.model.path}: {exc}") from None

    def _load_sync(self) -> None:
        # cuBLAS reads this when CUDA first starts; without it deterministic mode cannot cover matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        precision = self.config.runtime.precision
        if precision not in TORCH_DTYPES:
            raise BackendError(f"runtime.precision {precision.value}: transformers runs fp32, fp16 or bf16")
        self._device = "cuda:0" if torch.cuda.is_available() else "cpu"
        versions = {d: importlib.metadata.version(d) for d in ("transformers", "torch")}
        self._versions = " ".join(f"{d} {v}" for d, v in versions.items())
        # Greedy results must not depend on the kernel picked; this costs little at inference time.
        torch.use_deterministic_algorithms(True, warn_only=True)
        self._model = self._load_model(getattr(torch, TORCH_DTYPES[precision]))
        self._model.eval()
        # As the loaded model and torch report them, not as asked.
        dtype = str(getattr(self._model, "dtype", "unknown")).removeprefix("torch.")
        ran = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get(dtype, dtype)
        self._observed = {"precision": ran, "intra_op_threads": str(torch.get_num_threads())}
        log.info("transformers: %s on %s (%s)", self.config.model.path, self._device, self._versions)
        self._warmup()

    def _load_model(self, dtype: Any) -> Any:
        raise NotImplementedError

    def _warmup(self) -> None:
        pass

    async def unload(self) -> None:
        self._model = None
        self._executor.shutdown(wait=False, cancel_futures=True)


class CausalLMBackend(TransformersBackend):
    """Greedy completions from an `AutoModelForCausalLM`."""

    _tokenizer: Any = None

    def _load_model(self, dtype: Any) -> Any:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = self.config.model.path
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        return model.to(self._device)

    def _warmup(self) -> None:
        self._complete_sync("warm up", 1, 0)

    async def complete(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        if self._model is None:
            raise BackendError("transformers: model not loaded")
        result: Completion = await self._run(self._complete_sync, prompt, max_tokens, seed)
        return result

    def _complete_sync(self, prompt: str, max_tokens: int, seed: int) -> Completion:
        import torch

        torch.manual_seed(seed)
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id
        enc = self._tokenizer(prompt, return_tensors="pt").to(self._device)
        with torch.inference_mode():
            out = self._model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text=text, token_ids=tuple(int(t) for t in new))


class EncoderBackend(DeclaredTensors, TransformersBackend):
    """Token ids in, hidden states and their masked mean out."""

    def _load_model(self, dtype: Any) -> Any:
        from transformers import AutoModel

        model: Any = AutoModel.from_pretrained(self.config.model.path, dtype=dtype)
        takes = inspect.signature(model.forward).parameters
        names = [n for n in ENCODER_INPUTS if n in takes]
        self._inputs = tuple(TensorSpec(n, "INT64", (-1, -1)) for n in names)
        hidden = int(model.config.hidden_size)
        everything = {
            "last_hidden_state": TensorSpec("last_hidden_state", "FP32", (-1, -1, hidden)),
            "mean_pooled": TensorSpec("mean_pooled", "FP32", (-1, hidden)),
        }
        wanted = self.config.model.outputs or list(everything)
        unknown = [n for n in wanted if n not in everything]
        if unknown:
            raise BackendError(f"model.outputs names {unknown}, the model has {sorted(everything)}")
        self._outputs = tuple(everything[n] for n in wanted)
        return model.to(self._device)

    def _warmup(self) -> None:
        ids = np.ones((1, 8), dtype=np.int64)
        self._infer_sync({s.name: ids for s in self._inputs})

    async def infer(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._model is None:
            raise BackendError("transformers: model not loaded")
        result: dict[str, Tensor] = await self._run(self._infer_sync, inputs)
        return result

    def _infer_sync(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        import torch

        feed = {
            s.name: torch.from_numpy(np.ascontiguousarray(inputs[s.name], dtype=np.int64)).to(self._device)
            for s in self._inputs
            if s.name in inputs
        }
        if "input_ids" not in feed:
            raise BackendError("transformers: input 'input_ids' is required")
        mask = feed.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(feed["input_ids"])
            feed["attention_mask"] = mask
        with torch.inference_mode():
            hidden = self._model(**feed).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        values = {"last_hidden_state": hidden, "mean_pooled": pooled}
        return {s.name: values[s.name].float().cpu().numpy() for s in self._outputs}
