from pathlib import Path

import pytest
from infergate_server.backends import registry
from infergate_server.backends.base import BackendUnavailable
from infergate_server.config import BackendName, ConfigError, PromptCase, ServerConfig, TensorCase


def _base(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {"model": {"name": "m", "path": "model.onnx"}}
    doc.update(over)
    return doc


def test_bad_batch_size_names_the_field_path() -> None:
    with pytest.raises(ConfigError, match=r"^runtime\.batching\.maxBatchSize: .*greater than or equal to 1"):
        ServerConfig.from_dict(_base(runtime={"batching": {"maxBatchSize": 0}}))


def test_unknown_field_is_refused_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"runtime\.maxBatchSize: Extra inputs are not permitted"):
        ServerConfig.from_dict(_base(runtime={"maxBatchSize": 4}))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"runtime\.backend: "):
        ServerConfig.from_dict(_base(runtime={"backend": "tensorflow"}))


def test_prompt_case_needs_an_expectation_and_names_its_index() -> None:
    with pytest.raises(ConfigError, match=r"golden\.cases\[1\]: give expectedText or expectedTokenIds"):
        ServerConfig.from_dict(
            _base(
                golden={
                    "cases": [
                        {"name": "a", "prompt": "x", "expectedText": "y"},
                        {"name": "b", "prompt": "x"},
                    ]
                }
            )
        )


def test_cases_of_both_kinds_parse() -> None:
    cfg = ServerConfig.from_dict(
        _base(
            golden={
                "cases": [
                    {
                        "name": "t",
                        "inputs": {"x": {"shape": [1], "datatype": "FP32", "data": [1]}},
                        "expected": {},
                    },
                    {
                        "name": "p",
                        "prompt": "The capital of France is",
                        "maxTokens": 4,
                        "expectedText": " Paris",
                    },
                ]
            }
        )
    )
    assert isinstance(cfg.golden.cases[0], TensorCase)
    assert isinstance(cfg.golden.cases[1], PromptCase)
    assert cfg.golden.cases[1].max_tokens == 4


def test_bad_sha256_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model\.sha256: "):
        ServerConfig.from_dict(_base(model={"name": "m", "path": "x", "sha256": "abc"}))


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "server.yaml"
    f.parent.mkdir()
    f.write_text("model: {name: m, path: model/m.onnx}\nruntime: {tokenizer: {path: tok.json}}\n")
    cfg = ServerConfig.from_yaml(f)
    assert cfg.model.path == tmp_path / "sub" / "model" / "m.onnx"
    assert cfg.runtime.tokenizer is not None
    assert cfg.runtime.tokenizer.path == tmp_path / "sub" / "tok.json"


def test_defaults_never_wait_to_fill_a_batch() -> None:
    cfg = ServerConfig.from_dict(_base())
    assert cfg.runtime.batching.max_queue_delay_ms == 0
    assert cfg.runtime.backend is BackendName.ONNXRUNTIME


def test_round_trip_through_camel_case_dump() -> None:
    cfg = ServerConfig.from_dict(_base(runtime={"batching": {"maxBatchSize": 4, "maxQueueDelayMs": 2}}))
    again = ServerConfig.from_dict(cfg.to_yaml_dict())
    assert again == cfg
    assert cfg.to_yaml_dict()["runtime"]["batching"] == {"maxBatchSize": 4, "maxQueueDelayMs": 2.0}


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "server.yaml"
    f.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ServerConfig.from_yaml(f)


def test_registry_maps_every_backend_to_a_lazy_import_string() -> None:
    assert set(registry.BACKENDS) == set(BackendName)
    assert registry.BACKENDS[BackendName.VLLM] == "infergate_server.backends.vllm:VllmBackend"
    assert registry.BACKENDS[BackendName.TRANSFORMERS] == (
        "infergate_server.backends.transformers:TransformersBackend"
    )


def test_registry_missing_module_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BACKENDS, BackendName.VLLM, "infergate_server.backends.nope:Nope")
    with pytest.raises(BackendUnavailable, match=r"runtime\.backend vllm: cannot import"):
        registry.backend_class(BackendName.VLLM)


def test_config_module_imports_only_stdlib_and_pydantic() -> None:
    import ast

    import infergate_server.config as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    top = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert top <= {"__future__", "enum", "math", "pathlib", "re", "typing", "pydantic"}
