"""The node cache on the real node: two replicas of tiny share one verified entry on the node's hostPath
(the second starts from it, as status.startup says), a byte flipped in that entry is caught by the next
replica's fetch (evicted, fetched again, the server loads only the verified copy), and the sweep run on the
node finds and evicts a corrupted idle entry. The session operator has INFERGATE_NODE_CACHE (conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.integration.models import Models
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.realnode.realnode import NODE, infer_when_routed, pods, real_example, service_url

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


def _caches(models: Models, name: str, replicas: int) -> list[str] | None:
    """The sorted cache results of status.startup once it lists `replicas` replicas."""
    startup = (models.get(name).get("status") or {}).get("startup") or {}
    listed = startup.get("replicas") or []
    if len(listed) != replicas or any("cache" not in r for r in listed):
        return None
    return sorted(r["cache"] for r in listed)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_replicas_share_a_verified_entry_and_a_flipped_byte_is_caught(
    real_api: client.ApiClient, real_namespace: str, real_operator: OperatorProcess, node_cache_dir: Path
) -> None:
    models = Models(real_api, real_namespace)
    body = real_example("tiny-onnx", rename="cached")
    body["spec"]["replicas"] = 1
    models.create(body)
    models.wait_condition("cached", "GoldenPassed", "True", timeout_s=180)
    models.wait_available("cached", timeout_s=60)
    entry = node_cache_dir / "entries" / f"sha256-{body['spec']['model']['sha256']}"
    (artifact,) = [p for p in entry.iterdir() if not p.name.startswith(".")]
    assert wait_for(lambda: _caches(models, "cached", 1), 60, "status.startup of one replica") == ["miss"]

    models.patch("cached", {"spec": {"replicas": 2}})
    caches = wait_for(lambda: _caches(models, "cached", 2), 180, "status.startup of two replicas")
    assert caches == ["hit", "miss"], models.get("cached")["status"]["startup"]
    assert all(p.spec.node_name == NODE for p in pods(real_api, real_namespace, "cached"))

    _flip(artifact)  # the node's copy rots; the next replica's fetch re-verifies it before reuse
    models.patch("cached", {"spec": {"replicas": 3}})
    caches = wait_for(lambda: _caches(models, "cached", 3), 180, "status.startup of three replicas")
    assert "refetched" in caches, models.get("cached")["status"]["startup"]
    events = [json.loads(line) for line in (node_cache_dir / "events.jsonl").read_text().splitlines()]
    assert [e["key"] for e in events] == [entry.name]
    models.wait_available("cached", timeout_s=120)
    url = service_url(real_api, real_namespace, "cached")
    case = body["spec"]["golden"]["cases"][0]
    infer_when_routed(url, "cached", case["inputs"])  # served from the refetched, verified copy

    _flip(artifact)  # idle now: the sweep on the node catches it with no replica starting
    swept = subprocess.run(
        [
            sys.executable,
            "-m",
            "infergate_server.cli",
            "cache",
            "sweep",
            "--root",
            str(node_cache_dir),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert swept.returncode == 0, swept.stderr
    assert "1 corrupted" in swept.stderr, swept.stderr
    assert not entry.exists()
    found: list[dict[str, Any]] = [
        json.loads(line) for line in (node_cache_dir / "events.jsonl").read_text().splitlines()
    ]
    assert [e.get("foundBy") for e in found] == ["fetch", "sweep"]
