"""The node cache's sweep reports a corrupted entry as a Kubernetes Event on the real API server, posting
as the chart's sweep service account with only the chart's Role (create Events in its own namespace)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.integration.controlplane import ControlPlane
from tests.packaging.render import docs, helm_template, one

SWEEP_SA = "infergate-cache-sweep"
CLI = [sys.executable, "-m", "infergate_server.cli"]


def _corrupted_entry(tmp: Path) -> tuple[Path, str]:
    """A sha256-pinned entry filled by a real fetch, then a byte flipped in it: (cache root, its key)."""
    src = tmp / "model.bin"
    src.write_bytes(os.urandom(1 << 16))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    cache = tmp / "cache"
    dest = cache / "entries" / f"sha256-{sha}" / "model.bin"
    config = tmp / "server.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"name": "m", "uri": src.as_uri(), "sha256": sha, "path": str(dest)}})
    )
    env = {**os.environ, "INFERGATE_NODE_CACHE": str(cache), "INFERGATE_FETCH_RECORD_DIR": str(tmp)}
    subprocess.run(
        [*CLI, "fetch", "--config", str(config)], env=env, check=True, capture_output=True, timeout=120
    )
    data = bytearray(dest.read_bytes())
    data[100] ^= 0x01
    dest.write_bytes(bytes(data))
    return cache, f"sha256-{sha}"


def _sweep_account(api: client.ApiClient, plane: ControlPlane, namespace: str, tmp: Path) -> Path:
    """The chart's sweep ServiceAccount, Role and RoleBinding in `namespace`; a kubeconfig holding a token
    of that account (and nothing of the admin's)."""
    rendered = docs(helm_template({"models": {"nodeCache": "hostPath:/var/lib/infergate/models"}}, namespace))
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, one(rendered, "ServiceAccount", SWEEP_SA))
    rbac.create_namespaced_role(namespace, one(rendered, "Role", SWEEP_SA))
    rbac.create_namespaced_role_binding(namespace, one(rendered, "RoleBinding", SWEEP_SA))
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token(SWEEP_SA, namespace, request).status.token
    admin: dict[str, Any] = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]
    kubeconfig = tmp / "sweep.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "sweep", "user": {"token": token}}],
                "contexts": [{"name": "sweep", "context": {"cluster": cluster["name"], "user": "sweep"}}],
                "current-context": "sweep",
            }
        )
    )
    return kubeconfig


def test_a_corrupted_entry_becomes_a_warning_event_on_the_sweeps_pod(
    controlplane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    cache, key = _corrupted_entry(tmp_path)
    kubeconfig = _sweep_account(api_client, controlplane, namespace, tmp_path)
    pod = client.CoreV1Api(api_client).create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "cache-sweep-x1"},
            "spec": {"containers": [{"name": "sweep", "image": "infergate-server:dev"}]},
        },
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": pod.metadata.name,
        "POD_NAMESPACE": namespace,
        "POD_UID": pod.metadata.uid,
        "NODE_NAME": "gpu-node-7",
    }
    done = subprocess.run(
        [*CLI, "cache", "sweep", "--root", str(cache), "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "could not post" not in done.stderr, done.stderr
    events = client.CoreV1Api(api_client).list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={pod.metadata.uid},reason=NodeCacheEntryCorrupted"
    )  # the scheduler's and kwok's events about the pod are there too
    (event,) = events.items
    assert (event.type, event.reason) == ("Warning", "NodeCacheEntryCorrupted")
    assert (event.involved_object.kind, event.involved_object.name) == ("Pod", "cache-sweep-x1")
    assert key in event.message
    assert "gpu-node-7" in event.message
    assert not (cache / "entries" / key).exists()
