"""What ONNX Runtime reads must be what the digest covers: external data beside a single-file artifact is
refused, a directory artifact covers it; and string inputs reach the runtime as text (issue #20)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from infergate_server.artifacts import digest_of, file_sha256

from .conftest import ServerProcess

onnx = pytest.importorskip("onnx")


def _mul_model(folder: Path, factor: float) -> Path:
    """y = x * w, with w (4 floats) kept in external data `w.bin` beside `model.onnx`."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4,), factor, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        "mul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    return path


def _serve(tmp_path: Path, model: dict[str, Any], golden: dict[str, Any]) -> ServerProcess:
    doc = {"model": {"name": "mul", **model}, "golden": golden, "runtime": {"batching": {"maxBatchSize": 4}}}
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    return ServerProcess(cfg, tmp_path / "server.log")


GOLDEN = {
    "periodSeconds": 0,
    "cases": [
        {
            "name": "ones",
            "inputs": {"x": {"shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}},
            "expected": {"y": {"shape": [1, 4], "datatype": "FP32", "data": [2, 2, 2, 2]}},
        }
    ],
}


def test_external_data_beside_a_single_file_artifact_is_refused(tmp_path: Path) -> None:
    path = _mul_model(tmp_path / "m", 2.0)
    # The digest pins model.onnx only; w.bin beside it is whatever the folder holds.
    srv = _serve(tmp_path, {"path": str(path), "sha256": file_sha256(path)}, GOLDEN)
    try:
        doc = srv.wait_phase({"Ready", "NotReady", "Failed"})
        assert doc["phase"] == "Failed", doc
        assert "external data" in doc["reason"]
    finally:
        srv.terminate()


def test_a_directory_artifact_covers_its_external_data(tmp_path: Path) -> None:
    path = _mul_model(tmp_path / "m", 2.0)
    srv = _serve(tmp_path, {"path": str(path.parent), "sha256": digest_of(path.parent)}, GOLDEN)
    try:
        srv.wait_ready()
        r = httpx.post(
            srv.url + "/v2/models/mul/infer",
            json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        )
        assert r.json()["outputs"][0]["data"] == [2, 4, 6, 8]
    finally:
        srv.terminate()


def test_bytes_reach_a_string_input_as_text_not_as_a_bytes_repr(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["y"])],
        "echo",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [-1])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [-1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "echo.onnx"
    onnx.save_model(model, str(path))
    srv = _serve(tmp_path, {"path": str(path), "sha256": file_sha256(path)}, {"required": False})
    try:
        srv.wait_ready()
        r = httpx.post(
            srv.url + "/v2/models/mul/infer",
            json={"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "data": ["héllo", "wörld"]}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == ["héllo", "wörld"]
    finally:
        srv.terminate()
