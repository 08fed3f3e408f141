"""Other clusters beside the one that holds the real node: one refused the node, or queuing for it, must
neither take the holder's node down nor stop further clusters from starting (`up`'s lock)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.controlplane import CONTROLPLANE, ControlPlane, controlplane_path, start
from tests.integration.waiting import wait_for
from tests.realnode.realnode import NODE

pytestmark = [pytest.mark.integration, pytest.mark.realnode]

BRIDGE = "igreal0"


def node_ready(api: client.ApiClient) -> bool:
    node = client.CoreV1Api(api).read_node(NODE)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def bridge_exists() -> bool:
    return subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True, check=False).returncode == 0


def node_daemons_alive(plane: ControlPlane) -> bool:
    """The holder's kubelet, containerd and kube-proxy still run (the API notices a stop only later)."""
    node_dir = controlplane_path(plane.env, "NODE_DIR")
    for name in ("kubelet", "containerd", "kube-proxy"):
        try:
            os.kill(int((node_dir / f"{name}.pid").read_text()), 0)
        except (OSError, ValueError):
            return False
    return True


def holder_intact(plane: ControlPlane, api: client.ApiClient) -> None:
    assert bridge_exists(), "the holder's bridge is gone"
    assert node_daemons_alive(plane), "the holder's node daemons were stopped"
    assert node_ready(api)


def cluster_env(cluster: str, real_node: bool, wait_s: int = 0) -> dict[str, str]:
    return {
        **os.environ,
        "INFERGATE_CLUSTER": cluster,
        "INFERGATE_REAL_NODES": "1" if real_node else "0",
        "INFERGATE_REAL_NODE_WAIT_S": str(wait_s),
        "INFERGATE_NO_ROLLOUTS": "1",
    }


def down(env: dict[str, str]) -> None:
    subprocess.run([str(CONTROLPLANE / "down")], env=env, check=False, timeout=300, capture_output=True)


def test_a_cluster_refused_the_node_leaves_the_holders_node_running(
    real_plane: ControlPlane, real_api: client.ApiClient
) -> None:
    holder_intact(real_plane, real_api)
    env = cluster_env(f"igreal-refused-{os.getpid()}", real_node=True)
    # start() runs `down` for the cluster whose `up` failed, the node's part (node-down) included.
    with pytest.raises(RuntimeError, match="held by another cluster"):
        start(env["INFERGATE_CLUSTER"], real_node=True)
    down(env)
    holder_intact(real_plane, real_api)


def test_clusters_still_start_while_one_queues_for_the_node(
    real_plane: ControlPlane, real_api: client.ApiClient, tmp_path: Path
) -> None:
    queued_env = cluster_env(f"igreal-queued-{os.getpid()}", real_node=True, wait_s=600)
    other_env = cluster_env(f"igreal-other-{os.getpid()}", real_node=False)
    log = tmp_path / "queued.log"
    with log.open("wb") as out:
        queued = subprocess.Popen(
            [str(CONTROLPLANE / "up")], env=queued_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: b"held by" in log.read_bytes(), 180, lambda: f"the queue message: {log.read_text()}")
        up = [str(CONTROLPLANE / "up")]
        other = subprocess.run(up, env=other_env, capture_output=True, text=True, check=False, timeout=180)
        assert other.returncode == 0, other.stderr[-3000:]
        assert queued.poll() is None, log.read_text()  # still queued: the node is still held
    finally:
        os.killpg(queued.pid, signal.SIGTERM)
        queued.wait(timeout=30)
        down(queued_env)
        down(other_env)
    holder_intact(real_plane, real_api)
