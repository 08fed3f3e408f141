"""The node cache's periodic sweep with real fetch processes, a real registry and a real sweep process: a
byte flipped in an idle entry is found, the entry evicted and reported (events.jsonl, metrics), and the
next fetch fills it again; an entry a fetch holds is skipped; a pin record rewritten to match tampered bytes
does not fool it; sha256-pinned (non-OCI) entries are swept too."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from infergate_server import node_cache

from .conftest import free_port
from .registry import Registry, start_registry
from .test_node_cache import _config, _done, _fetch, _push, _record

pytestmark = pytest.mark.timeout(300)
SWEEP = [sys.executable, "-m", "infergate_server.cli", "cache", "sweep"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


def _filled(registry: Registry, tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """An entry filled by a real fetch: (cache root, its fetch config, the artifact in the entry)."""
    uri, _ = _push(registry, tmp, name, 1 << 20)
    cache = tmp / "cache"
    config = _config(tmp, uri, cache, name)
    _done(_fetch(config, cache, tmp / f"{name}-pod0"))
    return cache, config, Path(yaml.safe_load(config.read_text())["model"]["path"])


def _flip(path: Path, at: int = 4321) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _sweep_once(cache: Path) -> str:
    done = subprocess.run(
        [*SWEEP, "--root", str(cache), "--once"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def _events(cache: Path) -> list[dict[str, str]]:
    path = cache / node_cache.EVENTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in the metrics"
    return float(m.group(1))


def test_a_byte_flipped_in_an_idle_entry_is_found_evicted_reported_and_refetched(
    registry: Registry, tmp_path: Path
) -> None:
    cache, config, artifact = _filled(registry, tmp_path, "flip")
    _flip(artifact)
    port = free_port()
    metrics = ["--metrics-port", str(port), "--metrics-address", "127.0.0.1"]
    sweeper = subprocess.Popen(
        [*SWEEP, "--root", str(cache), "--interval-seconds", "0.2", *metrics],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            assert sweeper.poll() is None, sweeper.communicate()[1]
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                text = ""
            if "infergate_node_cache_corrupted_entries_total 1.0" in text:
                break
            time.sleep(0.1)
        assert _metric(text, "infergate_node_cache_corrupted_entries_total") == 1.0
        assert _metric(text, 'infergate_node_cache_swept_entries_total{outcome="corrupted"}') == 1.0
        assert _metric(text, "infergate_node_cache_entries") == 0.0
    finally:
        sweeper.send_signal(signal.SIGTERM)
        _out, err = sweeper.communicate(timeout=30)
    assert sweeper.returncode == 0, err
    assert not artifact.parent.exists()
    (event,) = _events(cache)
    assert event["key"] == artifact.parent.name
    assert event["foundBy"] == "sweep"
    assert "the manifest pins" in event["reason"]
    _done(_fetch(config, cache, tmp_path / "flip-pod1"))  # the next replica fills it again
    assert _record(tmp_path / "flip-pod1")["cache"] == "miss"


def test_an_intact_entry_is_verified_and_left_as_it_was(registry: Registry, tmp_path: Path) -> None:
    cache, _config_path, artifact = _filled(registry, tmp_path, "intact")
    used = (artifact.parent / node_cache.LAST_USED).stat().st_mtime_ns
    log = _sweep_once(cache)
    assert "1 verified, 0 corrupted" in log
    assert artifact.exists()
    assert (artifact.parent / node_cache.LAST_USED).stat().st_mtime_ns == used  # a sweep is not a use
    assert _events(cache) == []


def test_an_entry_a_fetch_holds_is_skipped(registry: Registry, tmp_path: Path) -> None:
    cache, _config_path, artifact = _filled(registry, tmp_path, "held")
    _flip(artifact)
    entry = node_cache.Entry(cache, artifact.parent.name)
    hold = (
        "import sys, time; from pathlib import Path; from infergate_server import node_cache\n"
        "with node_cache.locked(node_cache.Entry(Path(sys.argv[1]), sys.argv[2])):\n"
        "    print('held', flush=True); time.sleep(120)"
    )  # holds the entry's lock exactly as a fetch in progress does
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(cache), entry.key], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        log = _sweep_once(cache)
        assert "0 corrupted, 1 locked" in log
        assert artifact.exists()
        assert _events(cache) == []
    finally:
        holder.kill()
        holder.wait()
    log = _sweep_once(cache)  # released: the next sweep catches it
    assert "1 corrupted" in log
    assert not artifact.parent.exists()


def test_a_pin_record_rewritten_to_match_tampered_bytes_does_not_fool_the_sweep(
    registry: Registry, tmp_path: Path
) -> None:
    cache, _config_path, artifact = _filled(registry, tmp_path, "repinned")
    artifact.write_bytes(b"not the model")
    forged = node_cache.Pin(
        uri="file:///x", sha256=hashlib.sha256(b"not the model").hexdigest(), artifact="m"
    )
    (artifact.parent / node_cache.PIN).write_text(forged.model_dump_json())
    assert "1 corrupted" in _sweep_once(cache)
    assert not artifact.parent.exists()
    (event,) = _events(cache)
    assert "not this entry" in event["reason"]


def test_a_sha256_pinned_entry_is_swept_too(tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(1 << 20))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    dest = cache / "entries" / f"sha256-{sha}" / "model.bin"
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"name": "m", "uri": src.as_uri(), "sha256": sha, "path": str(dest)}})
    )
    _done(_fetch(config, cache, tmp_path / "pod0"))
    assert "1 verified" in _sweep_once(cache)
    _flip(dest)
    assert "1 corrupted" in _sweep_once(cache)
    assert not dest.parent.exists()
    (event,) = _events(cache)
    assert event["key"] == f"sha256-{sha}"


def test_the_event_is_about_the_sweeps_pod_and_fits_the_api_servers_limit() -> None:
    from datetime import UTC, datetime

    from infergate_server.cache_events import MAX_MESSAGE, REASON, PodRef, corruption_event

    pod = PodRef(name="infergate-cache-sweep-x1", namespace="infergate-node-cache", uid="u-1", node="gpu-7")
    event = corruption_event(pod, "oci-abc", "x" * 5000, datetime(2026, 12, 7, 15, 0, tzinfo=UTC))
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": "u-1",
    }
    assert (event["type"], event["reason"]) == ("Warning", REASON)
    assert event["metadata"]["namespace"] == pod.namespace
    assert len(event["message"]) <= MAX_MESSAGE
    assert event["message"].startswith("node gpu-7: cache entry oci-abc failed re-verification")
    assert event["lastTimestamp"] == "2026-12-07T15:00:00Z"
    assert PodRef.from_env({"POD_NAME": "p", "POD_NAMESPACE": "n", "POD_UID": "u"}) is None  # no NODE_NAME
