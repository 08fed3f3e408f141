"""The image's vLLM model-info seed: where vLLM's cache is for a given environment, and what is copied."""

import subprocess
import sys
from pathlib import Path

import pytest
from infergate_server.backends.vllm_modelinfo import SEED_ENV, cache_root, seed_cache


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VLLM_CACHE_ROOT": "/c/vllm", "XDG_CACHE_HOME": "/x", "HOME": "/h"}, "/c/vllm"),
        ({"XDG_CACHE_HOME": "/tmp/.cache", "HOME": "/h"}, "/tmp/.cache/vllm"),  # as the operator's pods
        ({"HOME": "/h"}, "/h/.cache/vllm"),
        ({"VLLM_CACHE_ROOT": "", "HOME": "/h"}, "/h/.cache/vllm"),
    ],
)
def test_the_cache_root_follows_vllms_own_rule(env: dict[str, str], expected: str) -> None:
    assert cache_root(env) == Path(expected)


LLAMA = "vllm-model_executor-models-llama-LlamaForCausalLM.json"
QWEN2 = "vllm-model_executor-models-qwen2-Qwen2ForCausalLM.json"


def _seed(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / LLAMA).write_text('{"hash": "a"}')
    (seed / QWEN2).write_text('{"hash": "b"}')
    (seed / "notes.txt").write_text("not a cache file")
    return seed


def test_seed_files_are_copied_into_the_childs_cache_and_never_over_a_file_there(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    env = {SEED_ENV: str(seed), "VLLM_CACHE_ROOT": str(tmp_path / "cache")}
    target = tmp_path / "cache" / "modelinfos"
    target.mkdir(parents=True)
    (target / LLAMA).write_text('{"hash": "vllm-wrote-this"}')
    assert seed_cache(env) == 1
    assert sorted(p.name for p in target.iterdir()) == [LLAMA, QWEN2]
    assert "vllm-wrote-this" in (target / LLAMA).read_text()
    assert seed_cache(env) == 0  # the next start finds everything in place


def test_no_seed_or_an_unwritable_cache_costs_only_the_inspection(tmp_path: Path) -> None:
    assert seed_cache({SEED_ENV: str(tmp_path / "absent"), "VLLM_CACHE_ROOT": str(tmp_path / "c")}) == 0
    assert not (tmp_path / "c").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {SEED_ENV: str(_seed(tmp_path)), "VLLM_CACHE_ROOT": str(blocker / "cache")}
    assert seed_cache(env) == 0


@pytest.mark.slow
def test_check_kernels_finds_vllms_compiled_ops() -> None:
    """What the image build runs before seeding: vLLM's CPU kernels load (they link libnuma.so.1, which a
    slim base lacks) and register their ops; vLLM itself only warns when they do not."""
    result = subprocess.run(
        [sys.executable, "-m", "infergate_server.backends.vllm_modelinfo", "--check-kernels"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kernel ops" in result.stdout
