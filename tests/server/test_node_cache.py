"""The node cache with real fetch processes and a real registry: concurrent fetches of one digest download it
once, an entry is reused only after re-verification, a corrupted entry is caught, evicted and refetched,
and the cache is kept under its size by evicting the least recently used entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from infergate_server import node_cache, oci
from infergate_server.oci_push import push

from .registry import Registry, start_registry

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"), access_log=True)
    yield reg
    reg.stop()


def _config(tmp: Path, uri: str, cache: Path, name: str) -> Path:
    key = "oci-" + uri.rsplit("@sha256:", 1)[1]
    doc = {"model": {"name": name, "uri": uri, "path": str(cache / "entries" / key / "m")}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _fetch(config: Path, cache: Path, pod: Path, max_bytes: int | None = None) -> subprocess.Popen[str]:
    pod.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, node_cache.CACHE_ENV: str(cache), "INFERGATE_FETCH_RECORD_DIR": str(pod)}
    if max_bytes is not None:
        env[node_cache.MAX_BYTES_ENV] = str(max_bytes)
    cmd = [sys.executable, "-m", "infergate_server.cli", "fetch", "--config", str(config)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _record(pod: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((pod / ".infergate-fetch.json").read_text())
    return doc


def _done(proc: subprocess.Popen[str]) -> None:
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def _push(registry: Registry, tmp: Path, name: str, size: int) -> tuple[str, str]:
    """A random file of `size` bytes pushed as an artifact; its pinned uri and file name."""
    src = tmp / f"{name}.bin"
    src.write_bytes(os.urandom(size))
    uri = push(src, f"oci://{registry.host}/cache/{name}:1")
    return uri, src.name


def _layer_digest(registry: Registry, uri: str, tmp: Path) -> str:
    probe = tmp / "probe"
    from infergate_server.artifacts import fetch

    fetch(uri, probe / "m", None)
    (layer,) = json.loads(oci.manifest_path(probe / "m").read_bytes())["layers"]
    digest: str = layer["digest"]
    return digest


def test_concurrent_fetches_of_one_digest_download_it_once(registry: Registry, tmp_path: Path) -> None:
    uri, _ = _push(registry, tmp_path, "once", 8 << 20)
    layer = _layer_digest(registry, uri, tmp_path)
    before = registry.blob_gets(layer)
    cache = tmp_path / "cache"
    config = _config(tmp_path, uri, cache, "m")
    procs = [_fetch(config, cache, tmp_path / f"pod{i}") for i in range(3)]
    for p in procs:
        _done(p)
    time.sleep(0.2)  # the access log line is written after the response
    assert registry.blob_gets(layer) - before == 1
    outcomes = sorted(_record(tmp_path / f"pod{i}")["cache"] for i in range(3))
    assert outcomes == ["hit", "hit", "miss"]


def test_a_corrupted_entry_is_caught_evicted_and_refetched(registry: Registry, tmp_path: Path) -> None:
    uri, _ = _push(registry, tmp_path, "corrupt", 1 << 20)
    cache = tmp_path / "cache"
    config = _config(tmp_path, uri, cache, "m")
    _done(_fetch(config, cache, tmp_path / "pod0"))
    entry = yaml.safe_load(config.read_text())["model"]["path"]
    data = bytearray(Path(entry).read_bytes())
    data[1234] ^= 0x01
    Path(entry).write_bytes(bytes(data))
    _done(_fetch(config, cache, tmp_path / "pod1"))
    assert _record(tmp_path / "pod1")["cache"] == "refetched"
    assert oci.verify_copy(uri, Path(entry)) == oci.parse_reference(uri).digest
    (event,) = [json.loads(line) for line in (cache / node_cache.EVENTS).read_text().splitlines()]
    assert event["key"] == Path(entry).parent.name
    assert "the manifest pins" in event["reason"]
    _done(_fetch(config, cache, tmp_path / "pod2"))
    assert _record(tmp_path / "pod2")["cache"] == "hit"


def test_the_least_recently_used_entry_is_evicted_over_the_size_limit(
    registry: Registry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    configs = []
    for name in ("a", "b", "c"):
        uri, _ = _push(registry, tmp_path, f"lru-{name}", 1 << 20)
        configs.append(_config(tmp_path, uri, cache, name))
    limit = (2 << 20) + (64 << 10)  # two entries and their manifests fit, three do not
    _done(_fetch(configs[0], cache, tmp_path / "p0", limit))
    time.sleep(0.05)
    _done(_fetch(configs[1], cache, tmp_path / "p1", limit))
    time.sleep(0.05)
    _done(_fetch(configs[0], cache, tmp_path / "p2", limit))  # a is used again: b is now the oldest
    time.sleep(0.05)
    _done(_fetch(configs[2], cache, tmp_path / "p3", limit))
    present = {p.name for p in (cache / "entries").iterdir()}
    keys = [Path(yaml.safe_load(c.read_text())["model"]["path"]).parent.name for c in configs]
    assert present == {keys[0], keys[2]}
