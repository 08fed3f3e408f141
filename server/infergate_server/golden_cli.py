"""`golden record` (write a golden set from a trusted in-process run) and `golden check` (run a set
against any OIP v2 server over HTTP)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from .backends.base import Completion, GenerativeBackend, Tensor
from .config import GoldenConfig, PromptCase, ServerConfig, TensorCase, TensorData
from .datatypes import OIP_TO_NUMPY, oip_of
from .drift import Baseline, record_baseline
from .golden import CaseResult, Outcome, compare_completion, compare_tensors, errored, tensor_of
from .metrics import Metrics
from .model import Phase, ServedModel


def load_cases(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list):
        raise ValueError(f"{path}: expected a list of cases (or a mapping with 'cases')")
    return cases


def _tensor_json(arr: Tensor) -> dict[str, Any]:
    dt = oip_of(arr.dtype)
    data: list[Any]
    if dt == "BYTES":
        data = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.ravel()]
    elif arr.dtype.kind == "f":
        data = [float(str(v)) for v in arr.ravel()]  # shortest repr that round-trips the float32 value
    else:
        data = arr.ravel().tolist()
    return {"shape": list(arr.shape), "datatype": dt, "data": data}


def baseline_of(cfg: ServerConfig, raw_cases: list[dict[str, Any]], bins: int) -> Baseline:
    """An input-drift baseline from the cases' inputs (the model is not run: inputs only)."""
    samples: dict[str, list[Tensor]] = {}
    for i, raw in enumerate(raw_cases):
        inputs = raw.get("inputs") if isinstance(raw, dict) else None
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError(f"cases[{i}]: a baseline takes tensor cases with inputs (no prompts)")
        for name, tensor in inputs.items():
            try:
                samples.setdefault(str(name), []).append(tensor_of(TensorData.model_validate(tensor)))
            except (ValidationError, ValueError) as exc:
                raise ValueError(f"cases[{i}].inputs.{name}: {exc}") from None
    return record_baseline(cfg.model.name, samples, bins)


async def record(
    cfg: ServerConfig, raw_cases: list[dict[str, Any]], atol: float, rtol: float
) -> list[dict[str, Any]]:
    """Run each case's inputs (or prompt) on the model and return cases with expectations filled in."""
    quiet = cfg.model_copy(update={"golden": GoldenConfig(cases=[], required=False, period_seconds=0)})
    model = ServedModel(quiet, Metrics())
    await model.start()
    try:
        if model.phase is not Phase.READY:
            raise RuntimeError(f"model did not start: {model.reason}")
        out = []
        for raw in raw_cases:
            if "prompt" in raw:
                if not isinstance(model.backend, GenerativeBackend):
                    raise ValueError(f"case {raw.get('name')}: prompt cases need a generative backend")
                max_tokens = int(raw.get("maxTokens", 8))
                seed = int(raw.get("seed", 0))
                got = await model.backend.complete(str(raw["prompt"]), max_tokens, seed)
                out.append(
                    {
                        "name": raw["name"],
                        "prompt": raw["prompt"],
                        "maxTokens": max_tokens,
                        "seed": seed,
                        "expectedText": got.text,
                        "expectedTokenIds": list(got.token_ids),
                    }
                )
                continue
            case = TensorCase.model_validate({**raw, "expected": {}})
            outputs = await model.infer_direct({n: tensor_of(t) for n, t in case.inputs.items()})
            wanted = list(raw.get("expected", {}) or outputs)
            out.append(
                {
                    "name": case.name,
                    "inputs": {n: t.model_dump(mode="json") for n, t in case.inputs.items()},
                    "expected": {n: _tensor_json(outputs[n]) for n in wanted},
                    "atol": raw.get("atol", atol),
                    "rtol": raw.get("rtol", rtol),
                }
            )
        return out
    finally:
        await model.stop()


def check(url: str, model: str, cases: list[TensorCase | PromptCase], timeout_s: float) -> list[CaseResult]:
    """Send each case to a running server and compare; prompt cases go to its OpenAI /v1/completions."""
    import httpx

    results = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s) as client:
        for case in cases:
            t0 = time.perf_counter()
            try:
                if isinstance(case, PromptCase):
                    r = client.post(
                        "/v1/completions",
                        json={
                            "model": model,
                            "prompt": case.prompt,
                            "max_tokens": case.max_tokens,
                            "temperature": 0,
                            "seed": case.seed,
                        },
                    )
                    r.raise_for_status()
                    text = r.json()["choices"][0]["text"]
                    if case.expected_text is None:
                        results.append(
                            CaseResult(case.name, Outcome.INCONCLUSIVE, "server returned no token ids")
                        )
                        continue
                    only_text = case.model_copy(update={"expected_token_ids": None})
                    results.append(
                        compare_completion(only_text, Completion(text, ()), time.perf_counter() - t0)
                    )
                    continue
                body = {
                    "inputs": [{"name": n, **t.model_dump(mode="json")} for n, t in case.inputs.items()],
                    "outputs": [{"name": n} for n in case.expected],
                }
                r = client.post(f"/v2/models/{model}/infer", json=body)
                if r.status_code != 200:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
                outputs = {o["name"]: _array(o) for o in r.json()["outputs"]}
                results.append(compare_tensors(case, outputs, time.perf_counter() - t0))
            except Exception as exc:
                results.append(errored(case, exc, time.perf_counter() - t0))
    return results


def _array(o: dict[str, Any]) -> Tensor:
    if o["datatype"] == "BYTES":
        arr = np.empty(len(o["data"]), dtype=object)
        arr[:] = [s.encode("utf-8") for s in o["data"]]
        return arr.reshape(o["shape"])
    return np.array(o["data"], dtype=OIP_TO_NUMPY[o["datatype"]]).reshape(o["shape"])
