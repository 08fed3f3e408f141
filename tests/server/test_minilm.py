"""The MiniLM-L3 example: token-id and BYTES text inputs, batching, runtime errors, golden CLIs."""

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import yaml

from .conftest import ServerProcess

TEXTS = [
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "infergate serves a model only after its golden inputs pass",
    "short one",
    "Batching must not change the embedding of a sentence, whatever its neighbours.",
]


def _text_body(texts: list[str]) -> dict[str, object]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def _ids_body(ids: list[int]) -> dict[str, object]:
    n = len(ids)
    return {
        "inputs": [
            {"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": ids},
            {"name": "attention_mask", "shape": [1, n], "datatype": "INT64", "data": [1] * n},
        ]
    }


def _embedding(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "461"
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_metadata_lists_token_and_text_inputs(minilm_server: ServerProcess) -> None:
    meta = httpx.get(minilm_server.url + "/v2/models/minilm-l3").json()
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "text"]
    assert meta["outputs"] == [{"name": "461", "datatype": "FP32", "shape": [-1, 384]}]


def test_text_and_token_ids_give_the_same_embedding(minilm_server: ServerProcess) -> None:
    ids = [101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]
    a = _embedding(httpx.post(minilm_server.url + "/v2/models/minilm-l3/infer", json=_ids_body(ids)))
    b = _embedding(httpx.post(minilm_server.url + "/v2/models/minilm-l3/infer", json=_text_body([TEXTS[1]])))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_texts_of_different_lengths_batch_to_the_same_results(minilm_server: ServerProcess) -> None:
    url = minilm_server.url + "/v2/models/minilm-l3/infer"
    alone = [_embedding(httpx.post(url, json=_text_body([t]))) for t in TEXTS]

    async def together() -> list[np.ndarray]:
        async with httpx.AsyncClient() as c:
            rs = await asyncio.gather(*(c.post(url, json=_text_body([t])) for t in TEXTS * 4))
        return [_embedding(r) for r in rs]

    for i, got in enumerate(asyncio.run(together())):
        np.testing.assert_allclose(got, alone[i % len(TEXTS)], atol=1e-4)
    many = _embedding(httpx.post(url, json=_text_body(TEXTS)))
    np.testing.assert_allclose(many, np.concatenate(alone), atol=1e-4)


def test_a_request_that_breaks_the_runtime_never_fails_its_batch_mates(minilm_server: ServerProcess) -> None:
    url = minilm_server.url + "/v2/models/minilm-l3/infer"
    good = _ids_body([101, 7592, 102])
    bad = _ids_body([101, 10_000_000, 102])  # out of the vocabulary: the Gather node fails

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient() as c:
            return await asyncio.gather(*(c.post(url, json=bad if i == 5 else good) for i in range(12)))

    rs = asyncio.run(main())
    # The client's mistake, seen only by the runtime: a 4xx (a 500 would count against a canary), and
    # no runtime internals (node names, index ranges) in the body.
    assert [r.status_code for r in rs] == [400 if i == 5 else 200 for i in range(12)]
    error = rs[5].json()["error"]
    assert "outside the range" in error
    assert "Gather" not in error
    assert "ONNXRuntimeError" not in error


def test_golden_check_cli_against_the_running_server(
    minilm_server: ServerProcess, minilm_example: Path
) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "golden",
            "check",
            "--url",
            minilm_server.url,
            "--config",
            str(minilm_example / "server.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "golden: Passed (2/2 passed)" in r.stdout


def test_golden_check_cli_fails_on_wrong_expectations(minilm_server: ServerProcess, tmp_path: Path) -> None:
    bad = {
        "cases": [
            {
                "name": "wrong",
                "inputs": {"text": {"shape": [1], "datatype": "BYTES", "data": ["hello"]}},
                "expected": {"461": {"shape": [1, 384], "datatype": "FP32", "data": [0.0] * 384}},
                "atol": 1e-3,
            }
        ]
    }
    f = tmp_path / "golden.yaml"
    f.write_text(yaml.safe_dump(bad))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "golden",
            "check",
            "--url",
            minilm_server.url,
            "--model",
            "minilm-l3",
            "--golden",
            str(f),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "golden: Failed" in r.stdout


def test_golden_record_reproduces_the_committed_set(tiny_example: Path, tmp_path: Path) -> None:
    out = tmp_path / "golden.yaml"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "golden",
            "record",
            "--config",
            str(tiny_example / "server.yaml"),
            "--cases",
            str(tiny_example / "cases.yaml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    recorded = yaml.safe_load(out.read_text())["cases"]
    committed = yaml.safe_load((tiny_example / "server.yaml").read_text())["golden"]["cases"]
    assert recorded == committed
