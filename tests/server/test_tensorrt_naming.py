import asyncio
from pathlib import Path

import pytest
from infergate_server.backends.base import BackendUnavailable
from infergate_server.backends.tensorrt import TensorRTBackend, select_engine
from infergate_server.config import ServerConfig
from infergate_server.hardware import Gpu, engine_filename, gpu_family, parse_nvidia_smi, trt_version_tag

H100 = Gpu("NVIDIA H100 80GB HBM3", "9.0")
A10G = Gpu("NVIDIA A10G", "8.6")


def test_gpu_family_is_sm_version_plus_product() -> None:
    assert gpu_family(H100) == "sm90-h100-80gb-hbm3"
    assert gpu_family(A10G) == "sm86-a10g"
    assert gpu_family(Gpu("Tesla T4", "7.5")) == "sm75-tesla-t4"


def test_trt_version_tag_keeps_major_minor_patch() -> None:
    assert trt_version_tag("10.3.0.26") == "trt10.3.0"
    assert trt_version_tag("8.6") == "trt8.6.0"
    with pytest.raises(ValueError, match="not a TensorRT version"):
        trt_version_tag("ten")


def test_engine_filename() -> None:
    assert engine_filename("model", A10G, "10.3.0.26", "fp16") == "model.sm86-a10g.trt10.3.0.fp16.engine"


def test_parse_nvidia_smi() -> None:
    out = "NVIDIA H100 80GB HBM3, 9.0\nNVIDIA A10G, 8.6\n\ngarbage\n"
    assert parse_nvidia_smi(out) == [H100, A10G]


def test_select_engine_picks_the_matching_file(tmp_path: Path) -> None:
    for gpu in (H100, A10G):
        (tmp_path / engine_filename("model", gpu, "10.3.0", "fp16")).write_bytes(b"x")
    assert select_engine(tmp_path, "model", [A10G], "10.3.0.26", "fp16").name == (
        "model.sm86-a10g.trt10.3.0.fp16.engine"
    )


def test_select_engine_refuses_other_trt_versions_and_lists_what_it_found(tmp_path: Path) -> None:
    (tmp_path / engine_filename("model", A10G, "10.2.0", "fp16")).write_bytes(b"x")
    with pytest.raises(
        BackendUnavailable, match=r"no engine model\.sm86-a10g\.trt10\.3\.0\.fp16\.engine.*10\.2\.0"
    ):
        select_engine(tmp_path, "model", [A10G], "10.3.0", "fp16")


def test_select_engine_refuses_without_gpu_or_tensorrt(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="needs an NVIDIA GPU"):
        select_engine(tmp_path, "model", [], "10.3.0", "fp16")
    with pytest.raises(BackendUnavailable, match="needs the tensorrt package"):
        select_engine(tmp_path, "model", [A10G], None, "fp16")


def test_an_explicit_engine_file_is_used_as_is(tmp_path: Path) -> None:
    f = tmp_path / "anything.engine"
    f.write_bytes(b"x")
    assert select_engine(f, "model", [A10G], "10.3.0", "fp16") == f


def test_backend_refuses_clearly_on_this_host(tmp_path: Path) -> None:
    from infergate_server.hardware import probe_gpus

    if probe_gpus():
        pytest.skip("this host has an NVIDIA GPU")
    cfg = ServerConfig.from_dict(
        {
            "model": {"name": "m", "path": str(tmp_path), "format": "tensorrt-engine"},
            "runtime": {"backend": "tensorrt"},
        }
    )
    backend = TensorRTBackend(cfg)
    with pytest.raises(BackendUnavailable, match="needs an NVIDIA GPU"):
        asyncio.run(backend.load())
    asyncio.run(backend.unload())
