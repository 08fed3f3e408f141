"""spec.model.imageVolume, as the pod sees it: the model lies in a read-only directory the kubelet mounted
from the oci:// image (here a read-only directory in its place; tests/realnode/test_image_volume.py mounts
a real image). A real fetch process verifies it in place, copies nothing and pulls nothing (the uri names a
registry that does not exist), leaves its stamp in the pod's own record directory, and a real server then
loads it without hashing it again; a wrong sha256 or a path not in the image stops the pod before the
server loads anything."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from infergate_server import startup
from infergate_server.oci_push import push

from .conftest import example_config
from .registry import start_registry

pytestmark = pytest.mark.timeout(120)
UNREACHABLE = "oci://registry.invalid:5000/models/tiny@sha256:" + "ab" * 32


@pytest.fixture
def mounted(tiny_example: Path, tmp_path: Path) -> Iterator[Path]:
    """The image's root: the tiny model at weights/tiny.onnx, every directory and file read-only."""
    cfg = yaml.safe_load((tiny_example / "server.yaml").read_text())
    root = tmp_path / "model-image"
    (root / "weights").mkdir(parents=True)
    shutil.copyfile(tiny_example / cfg["model"]["path"], root / "weights" / "tiny.onnx")
    for path in (root / "weights" / "tiny.onnx", root / "weights", root):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield root
    for path in (root, root / "weights"):
        path.chmod(0o755)


def _overrides(model: Path, sha256: str) -> dict[str, Any]:
    return {"model": {"uri": UNREACHABLE, "path": str(model), "sha256": sha256, "imageVolume": True}}


def _fetch(config: Path, pod_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, startup.RECORD_DIR_ENV: str(pod_dir)}
    return subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fetch_verifies_the_mounted_model_in_place_and_the_server_trusts_only_that(
    tiny_example: Path, mounted: Path, tmp_path: Path, start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = mounted / "weights" / "tiny.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    before = sorted(p.name for p in mounted.rglob("*"))
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    fetched = _fetch(example_config(tiny_example, tmp_path, _overrides(model, sha)), pod_dir)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == sha
    assert sorted(p.name for p in mounted.rglob("*")) == before  # nothing written into the image
    record = json.loads((pod_dir / startup.RECORD_NAME).read_text())
    assert record["bytes"] == 0  # nothing copied
    assert record["verified"]["digest"] == sha

    monkeypatch.setenv(startup.RECORD_DIR_ENV, str(pod_dir))  # as the operator sets it for an image volume
    srv = start_server(tiny_example, _overrides(model, sha))
    srv.wait_ready()
    doc = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()
    assert doc["artifact"]["verifiedBy"] == "fetch"
    assert doc["artifact"]["sha256"] == sha
    assert doc["artifact"]["sha256Verified"] is True
    assert doc["startup"]["bytes"]["verify"] == 0


def test_without_its_fetch_stamp_the_server_hashes_the_mounted_model_itself(
    tiny_example: Path, mounted: Path, start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = mounted / "weights" / "tiny.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    monkeypatch.delenv(startup.RECORD_DIR_ENV, raising=False)
    srv = start_server(tiny_example, _overrides(model, sha))
    srv.wait_ready()
    doc = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()
    assert doc["artifact"]["verifiedBy"] == "server"  # no manifest is looked for: the image has none
    assert doc["artifact"]["sha256"] == sha


def test_a_wrong_sha256_stops_the_fetch_and_the_server(
    tiny_example: Path, mounted: Path, tmp_path: Path, start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = mounted / "weights" / "tiny.onnx"
    wrong = "0" * 64
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    fetched = _fetch(example_config(tiny_example, tmp_path, _overrides(model, wrong)), pod_dir)
    assert fetched.returncode != 0
    assert "ArtifactDigestMismatch" in fetched.stderr, fetched.stderr
    assert not (pod_dir / startup.RECORD_NAME).exists()
    monkeypatch.delenv(startup.RECORD_DIR_ENV, raising=False)
    doc = start_server(tiny_example, _overrides(model, wrong)).wait_phase({"Failed"})
    assert not doc["ready"]


def test_a_path_not_in_the_image_is_named(tiny_example: Path, mounted: Path, tmp_path: Path) -> None:
    pod_dir = tmp_path / "pod"
    pod_dir.mkdir()
    config = example_config(tiny_example, tmp_path, _overrides(mounted / "tiny.onnx", "0" * 64))
    fetched = _fetch(config, pod_dir)
    assert fetched.returncode != 0
    assert "model.imageVolume.path" in fetched.stderr, fetched.stderr


def test_image_volume_needs_an_oci_uri_and_a_sha256(tiny_example: Path, tmp_path: Path) -> None:
    from infergate_server.config import ConfigError, ServerConfig

    for model in (
        {"uri": UNREACHABLE, "sha256": None, "imageVolume": True},
        {"uri": "s3://bucket/tiny.onnx", "sha256": "0" * 64, "imageVolume": True},
    ):
        config = example_config(tiny_example, tmp_path, {"model": model})
        with pytest.raises(ConfigError, match="imageVolume"):
            ServerConfig.from_yaml(config)


def test_push_image_makes_a_reproducible_oci_image_with_the_model_at_its_root(
    tiny_example: Path, tmp_path: Path
) -> None:
    cfg = yaml.safe_load((tiny_example / "server.yaml").read_text())
    model = tiny_example / cfg["model"]["path"]
    registry = start_registry(tmp_path / "registry")
    try:
        uri = push(model, f"oci://{registry.host}/images/tiny:1", image=True)
        again = push(model, f"oci://{registry.host}/images/tiny:2", image=True)
        assert again.rsplit("@", 1)[1] == uri.rsplit("@", 1)[1]  # same input, same digest
        base = f"http://{registry.host}/v2/images/tiny"
        manifest = httpx.get(
            f"{base}/manifests/{uri.rsplit('@', 1)[1]}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=10,
        ).json()
        assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        (layer,) = manifest["layers"]
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
        config = httpx.get(f"{base}/blobs/{manifest['config']['digest']}", timeout=10).json()
        assert config["rootfs"]["diff_ids"] == [layer["digest"]]
        blob = httpx.get(f"{base}/blobs/{layer['digest']}", timeout=10).content
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        (tar_path := tmp_path / "layer.tar").write_bytes(blob)
        with tarfile.open(tar_path) as tar:
            (member,) = tar.getmembers()
            assert (member.name, member.mode, member.mtime, member.uid) == (model.name, 0o444, 0, 0)
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == model.read_bytes()
    finally:
        registry.stop()
