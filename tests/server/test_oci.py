"""oci:// artifacts against a real registry (CNCF distribution on 127.0.0.1, tests/server/registry.py):
pushed with `infergate-server push` (ORAS's library), pulled and verified by the fetch step, served."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from infergate_server import oci
from infergate_server.artifacts import ArtifactError, digest_of, fetch
from infergate_server.config import ConfigError, ServerConfig
from infergate_server.oci_push import push

from .registry import Registry, start_registry

pytestmark = pytest.mark.timeout(300)

USER, PASSWORD = "puller", "s3cret-Pa55word-never-logged"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), USER, PASSWORD)
    yield reg
    reg.stop()


def _blob_data(registry: Registry, digest: str) -> Path:
    """The registry's own file holding a blob (distribution's filesystem layout): where a tamperer would
    change it."""
    hexd = digest.removeprefix("sha256:")
    root = registry.log.parent / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return root / hexd[:2] / hexd / "data"


def _flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _manifest(registry: Registry, uri: str) -> dict[str, Any]:
    ref = oci.parse_reference(uri)
    return json.loads(_blob_data(registry, ref.digest).read_bytes())


def test_a_pushed_file_is_pulled_verified_and_kept_with_its_manifest(
    registry: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"onnx bytes " * 10_000)
    uri = push(src, f"oci://{registry.host}/models/tiny:v1")
    assert uri.startswith(f"oci://{registry.host}/models/tiny@sha256:")
    dest = tmp_path / "out" / "tiny"
    digest = fetch(uri, dest, None)
    assert dest.read_bytes() == src.read_bytes()
    assert "sha256:" + digest == oci.parse_reference(uri).digest
    kept = oci.manifest_path(dest).read_bytes()
    assert "sha256:" + hashlib.sha256(kept).hexdigest() == oci.parse_reference(uri).digest
    assert oci.verify_copy(uri, dest) == oci.parse_reference(uri).digest
    # model.sha256, when given too, must hold as well
    with pytest.raises(ArtifactError, match="sha256"):
        fetch(uri, tmp_path / "out2" / "tiny", "0" * 64)


def test_a_directory_is_one_layer_per_file_at_its_path(registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "hf"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 100)
    uri = push(src, f"oci://{registry.host}/models/hf")
    titles = sorted(layer["annotations"][oci.TITLE] for layer in _manifest(registry, uri)["layers"])
    assert titles == ["config.json", "sub/weights.bin"]
    dest = tmp_path / "out" / "hf"
    fetch(uri, dest, None)
    assert digest_of(dest) == digest_of(src)


def test_a_tag_is_refused_naming_the_field(registry: Registry, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "tiny"
    with pytest.raises(ArtifactError, match=r"model\.uri: .*the tag 'v1' is not a digest"):
        fetch(f"oci://{registry.host}/models/tiny:v1", dest, "0" * 64)
    with pytest.raises(ArtifactError, match=r"runtime\.tokenizer\.uri: .*no @sha256"):
        fetch(f"oci://{registry.host}/models/tok", dest, None, field="runtime.tokenizer.uri")
    assert not dest.exists()
    doc = {"model": {"name": "m", "path": "/m", "uri": f"oci://{registry.host}/models/tiny:v1"}}
    with pytest.raises(ConfigError, match=r"model\.uri"):
        ServerConfig.from_dict(doc)


def test_a_manifest_whose_bytes_are_not_the_pinned_digest_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"manifest tamper " * 1000)
    uri = push(src, f"oci://{registry.host}/models/mtamper")
    # Pinned to a digest the registry does not hold: refused (not found), nothing written.
    other = uri.rsplit("@", 1)[0] + "@sha256:" + "ab" * 32
    dest = tmp_path / "out" / "m"
    with pytest.raises(ArtifactError, match=r"model\.uri: .*HTTP 404 for the manifest"):
        fetch(other, dest, None)
    # The registry's stored manifest changed under the pinned digest: its bytes no longer hash to it.
    stored = _blob_data(registry, oci.parse_reference(uri).digest)
    original = stored.read_bytes()
    changed = json.loads(original)
    changed["annotations"] = {"org.opencontainers.image.description": "swapped under the same digest"}
    stored.write_bytes(json.dumps(changed).encode())
    try:
        with pytest.raises(
            ArtifactError, match=r"model\.uri: .*manifest has digest sha256:[0-9a-f]{64}, not the pinned"
        ):
            fetch(uri, dest, None)
    finally:
        stored.write_bytes(original)
    assert not dest.exists()
    assert not list(dest.parent.glob(".m.*")), "no staging left behind"


def test_a_tampered_layer_is_refused(registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"layer tamper " * 5000)
    uri = push(src, f"oci://{registry.host}/models/ltamper")
    (layer,) = _manifest(registry, uri)["layers"]
    blob = _blob_data(registry, layer["digest"])
    _flip_byte(blob, 100)
    dest = tmp_path / "out" / "m"
    try:
        with pytest.raises(
            ArtifactError, match=r"model\.uri: .*layer 'model\.onnx': content is sha256:.*refusing"
        ):
            fetch(uri, dest, None)
    finally:
        _flip_byte(blob, 100)
    assert not dest.exists()
    fetch(uri, dest, None)  # restored: it verifies again
    assert dest.read_bytes() == src.read_bytes()


def test_a_local_copy_changed_after_the_fetch_is_caught_and_fetched_again(
    registry: Registry, tmp_path: Path
) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"reverify " * 4000)
    uri = push(src, f"oci://{registry.host}/models/reverify")
    dest = tmp_path / "out" / "m"
    fetch(uri, dest, None)
    _flip_byte(dest, 7)
    with pytest.raises(oci.OciError, match=r"is sha256:[0-9a-f]{64}, the manifest pins"):
        oci.verify_copy(uri, dest)
    fetch(uri, dest, None)  # the existing copy does not verify: pulled again, replaced
    assert dest.read_bytes() == src.read_bytes()


def test_registry_credentials_come_from_the_pull_secret_and_never_reach_messages(
    auth_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = auth_registry.auth_file(tmp_path)
    src = tmp_path / "model.onnx"
    src.write_bytes(b"private weights " * 2000)
    uri = push(src, f"oci://{auth_registry.host}/private/m:v1", good)
    monkeypatch.setenv(oci.AUTH_FILE_ENV, str(good))
    dest = tmp_path / "out" / "m"
    fetch(uri, dest, None)
    assert dest.read_bytes() == src.read_bytes()

    bad = auth_registry.auth_file(tmp_path, USER, "wrong-" + PASSWORD)
    monkeypatch.setenv(oci.AUTH_FILE_ENV, str(bad))
    with pytest.raises(ArtifactError) as refused:
        fetch(uri, tmp_path / "out2" / "m", None)
    message = str(refused.value)
    assert "refused the credentials (HTTP 401)" in message
    assert "model.uri" in message
    assert PASSWORD not in message
    assert "wrong-" not in message

    monkeypatch.delenv(oci.AUTH_FILE_ENV)
    with pytest.raises(ArtifactError, match=r"asks for credentials \(HTTP 401\) and none were given"):
        fetch(uri, tmp_path / "out3" / "m", None)


def test_an_oci_artifact_is_fetched_by_the_cli_and_served(
    registry: Registry, tiny_example: Path, tmp_path: Path, start_server: Any
) -> None:
    cfg = yaml.safe_load((tiny_example / "server.yaml").read_text())
    model = tiny_example / cfg["model"]["path"]
    pushed = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "push",
            str(model),
            "--to",
            f"oci://{registry.host}/ex/tiny:1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = tmp_path / "models" / "tiny"
    overrides = {"model": {"uri": pushed, "path": str(dest), "sha256": None}}
    from .conftest import example_config

    config = example_config(tiny_example, tmp_path, overrides)
    fetched = subprocess.run(
        [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == oci.parse_reference(pushed).digest.removeprefix("sha256:")
    srv = start_server(tiny_example, overrides)
    srv.wait_ready()
    startup = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()["startup"]
    assert set(startup["seconds"]) >= {"fetch", "verify", "load", "warmup", "golden"}
    assert startup["bytes"]["fetch"] == startup["bytes"]["verify"] == model.stat().st_size
    assert "cache" not in startup  # no node cache here
    _flip_byte(dest, 3)  # a changed copy is never loaded: the server re-verifies it against the kept manifest
    failed = start_server(tiny_example, overrides)
    doc = failed.wait_phase({"Failed"})
    assert "the manifest pins" in json.dumps(doc)
