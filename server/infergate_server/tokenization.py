"""Optional server-side tokenization: a BYTES `text` tensor becomes the model's token-id inputs.

A whole batch is tokenized at once and padded to its longest text, so texts of different lengths batch
together; BERT-style models mask the padding, so results match per-text runs within float tolerance.
"""

from __future__ import annotations

import numpy as np

from .backends.base import Tensor, TensorSpec
from .config import TokenizerConfig
from .errors import InvalidInput

_PRODUCED = ("input_ids", "attention_mask", "token_type_ids")


class TextTokenizer:
    def __init__(self, cfg: TokenizerConfig, model_inputs: tuple[TensorSpec, ...]) -> None:
        from tokenizers import Tokenizer

        self.spec = TensorSpec(cfg.input_name, "BYTES", (-1,))
        names = {s.name for s in model_inputs}
        unknown = names - set(_PRODUCED)
        if unknown:
            raise ValueError(
                f"runtime.tokenizer: the model also needs {sorted(unknown)}, which a tokenizer cannot produce"
            )
        self._wanted = [n for n in _PRODUCED if n in names]
        self._max_text_bytes = cfg.max_text_bytes
        self._dtypes = {s.name: s.datatype for s in model_inputs}
        self._tok = Tokenizer.from_file(str(cfg.path))
        self._tok.enable_truncation(max_length=cfg.max_length)
        self._tok.enable_padding()
        self._tok.encode_batch(["warm up"])

    def texts_of(self, tensor: Tensor) -> tuple[list[str], int]:
        """Decode a BYTES tensor of shape [N] into N strings and their total UTF-8 size: 400 on no
        texts, invalid UTF-8, or an element over maxTextBytes (the tokenizer would read it all before
        truncating)."""
        if tensor.size == 0:
            raise InvalidInput(f"input '{self.spec.name}': no texts (shape {list(tensor.shape)})")
        out = []
        limit = self._max_text_bytes
        total = 0
        for i, item in enumerate(tensor.ravel()):
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
            if len(raw) > limit:
                raise InvalidInput(
                    f"input '{self.spec.name}': element {i} is {len(raw)} B, over "
                    f"runtime.tokenizer.maxTextBytes={limit}"
                )
            total += len(raw)
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"input '{self.spec.name}': element {i} is not valid UTF-8") from None
        return out, total

    def encode(self, texts: list[str]) -> dict[str, Tensor]:
        encs = self._tok.encode_batch(texts)
        out: dict[str, Tensor] = {}
        for n in self._wanted:  # only the columns the model takes (a list-to-array copy each)
            if n == "input_ids":
                rows = [e.ids for e in encs]
            elif n == "attention_mask":
                rows = [e.attention_mask for e in encs]
            else:
                rows = [e.type_ids for e in encs]
            out[n] = np.array(rows, dtype=np.int32 if self._dtypes[n] == "INT32" else np.int64)
        return out
