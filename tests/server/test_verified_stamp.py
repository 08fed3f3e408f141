"""A replica's server does not hash again what its own fetch step verified moments before, and only that:
real fetch processes fill and reuse a node-cache entry from a real registry, real servers load it. The
server honours the fetch's stamp only when every file is the very file verified (a utime, a flipped byte, a
stamp for other pins, or a record outside the pod's record directory: it hashes, as before)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from infergate_server import startup
from infergate_server.oci_push import push

from .conftest import example_config
from .registry import Registry, start_registry

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def replica(
    registry: Registry, tiny_example: Path, tmp_path: Path, start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """replica(name) -> the started server of a new pod on the node: its own record directory, the shared
    cache entry of the tiny example pushed as an oci:// artifact; fetched by a real fetch process first."""
    cfg = yaml.safe_load((tiny_example / "server.yaml").read_text())
    uri = push(tiny_example / cfg["model"]["path"], f"oci://{registry.host}/stamp/tiny:1")
    cache = tmp_path / "cache"
    artifact = cache / "entries" / ("oci-" + uri.rsplit("@sha256:", 1)[1]) / "tiny.onnx"
    overrides = {"model": {"uri": uri, "path": str(artifact), "sha256": None}}

    def start(pod: str, before_serve: Any = None) -> Any:
        pod_dir = tmp_path / pod
        pod_dir.mkdir()
        monkeypatch.setenv(startup.RECORD_DIR_ENV, str(pod_dir))  # as the operator sets it with a cache
        config = example_config(tiny_example, tmp_path, overrides)
        env = {**os.environ, "INFERGATE_NODE_CACHE": str(cache)}
        fetched = subprocess.run(
            [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fetched.returncode == 0, fetched.stderr
        if before_serve is not None:
            before_serve(artifact, pod_dir / startup.RECORD_NAME)
        return start_server(tiny_example, overrides)

    return start


def _facts(srv: Any) -> dict[str, Any]:
    srv.wait_ready()
    doc: dict[str, Any] = httpx.get(srv.url + "/v2/models/tiny/golden", timeout=5).json()
    return doc


def test_the_server_loads_what_its_fetch_verified_without_hashing_it_again(replica: Any) -> None:
    first = _facts(replica("pod-a"))
    assert first["artifact"]["verifiedBy"] == "fetch"
    assert first["artifact"]["sha256Verified"] is True
    assert first["startup"]["bytes"]["verify"] == 0
    second = _facts(replica("pod-b"))  # the node-cache hit: re-hashed once, by its fetch step
    assert second["startup"]["cache"] == "hit"
    assert second["artifact"]["verifiedBy"] == "fetch"
    assert second["artifact"]["sha256"] == first["artifact"]["sha256"]


def test_a_file_touched_after_the_fetch_is_hashed_by_the_server(replica: Any) -> None:
    def touch(artifact: Path, _record: Path) -> None:
        os.utime(artifact)  # same bytes, a new ctime: no longer the file the fetch vouched for

    doc = _facts(replica("pod-a", touch))
    assert doc["artifact"]["verifiedBy"] == "server"
    assert doc["startup"]["bytes"]["verify"] > 0


def test_a_byte_flipped_after_the_fetch_fails_startup(replica: Any) -> None:
    def flip(artifact: Path, _record: Path) -> None:
        data = bytearray(artifact.read_bytes())
        data[11] ^= 0x01
        artifact.write_bytes(bytes(data))

    doc = replica("pod-a", flip).wait_phase({"Failed"})
    assert "the manifest pins" in json.dumps(doc)


def test_a_stamp_for_other_pins_is_not_honoured(replica: Any) -> None:
    def repin(_artifact: Path, record: Path) -> None:
        doc = json.loads(record.read_text())
        doc["verified"]["uri"] = doc["verified"]["uri"].replace("stamp/tiny", "other/tiny")
        record.write_text(json.dumps(doc))

    assert _facts(replica("pod-a", repin))["artifact"]["verifiedBy"] == "server"


def test_without_a_pod_record_directory_the_server_hashes(
    replica: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_record_dir(artifact: Path, record: Path) -> None:
        # The record beside the artifact lies in the shared entry, which other pods' fetch steps can write.
        (artifact.parent / startup.RECORD_NAME).write_bytes(record.read_bytes())
        monkeypatch.delenv(startup.RECORD_DIR_ENV)

    assert _facts(replica("pod-a", no_record_dir))["artifact"]["verifiedBy"] == "server"
