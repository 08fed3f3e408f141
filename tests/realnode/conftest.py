"""The real-node tier: a local cluster whose node `real-cpu-0` runs the built server image in real pods
(kubelet + containerd + runc, DESIGN.md §10), the operator as a local process, the examples' files on a
read-only hostPath volume. One cluster per session (the host has one real node), one namespace per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.integration.controlplane import REPO, ControlPlane, start
from tests.integration.models import models_pvc
from tests.integration.operator_process import OperatorProcess, free_port
from tests.realnode.realnode import IMAGE, stage_models

pytestmark = pytest.mark.realnode


def _run(args: list[str], env: dict[str, str], timeout: int) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")


def wants_autoscaling(session: pytest.Session) -> bool:
    """metrics-server, KEDA and its HTTP add-on (minutes to build cold) only for sessions that test them."""
    return any(item.path.name == "test_autoscaling.py" for item in session.items)


@pytest.fixture(scope="session")
def real_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    cluster = os.environ.get("INFERGATE_REAL_TEST_CLUSTER", f"igreal-{os.getpid()}")
    plane = start(cluster, real_node=True, autoscaling=wants_autoscaling(request.session))
    try:
        # Built by `make test` beforehand (tools/image/build: a no-op when nothing changed).
        _run([str(REPO / "tools" / "image" / "import")], plane.env, timeout=1200)
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        yield plane
    finally:
        if not os.environ.get("INFERGATE_REAL_TEST_CLUSTER"):
            plane.down()


@pytest.fixture(scope="session")
def real_api(real_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(real_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_models(tmp_path_factory.mktemp("models"))


def prometheus_address(plane: ControlPlane) -> str:
    """Where `up`'s Prometheus for the real node's pods listens."""
    return state_file(plane, "prometheus.address")


def state_file(plane: ControlPlane, name: str) -> str:
    """An address `up` wrote beside the cluster's kubeconfig."""
    return (plane.kubeconfig.parent / name).read_text().strip()


@pytest.fixture(scope="session")
def real_operator(
    real_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    extra_env = {
        "INFERGATE_SERVER_IMAGE": IMAGE,
        "INFERGATE_IMAGE_PULL_POLICY": "Never",
        # `up`'s Prometheus scrapes the real node's pods; Argo's controller runs on the host, without
        # cluster DNS, and reaches the canary Service by its cluster IP (kube-proxy's rules on the host).
        "INFERGATE_PROMETHEUS_ADDRESS": prometheus_address(real_plane),
        "INFERGATE_GOLDEN_URL_TEMPLATE": "http://{service_ip}:{port}/v2/models/{model}/golden",
    }
    if (real_plane.kubeconfig.parent / "keda-http-scaler.address").exists():
        # KEDA's HTTP add-on (tools/autoscaling/up): its scaler for scale from zero, and the operator's
        # 503 + Retry-After for requests held past their timeout, reached as `localhost`.
        extra_env["INFERGATE_KEDA_HTTP_SCALER_ADDRESS"] = state_file(real_plane, "keda-http-scaler.address")
        extra_env["INFERGATE_WAKE_TIMEOUT_HOST"] = "localhost"
        extra_env["INFERGATE_WAKE_TIMEOUT_PORT"] = str(free_port())
    operator = OperatorProcess(real_plane.env, log, extra_env=extra_env).start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture
def real_namespace(real_api: client.ApiClient, models_dir: Path) -> Iterator[str]:
    """A namespace with the `models` claim over the staged example files."""
    name = f"r-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(real_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    models_pvc(real_api, name, str(models_dir))
    try:
        yield name
    finally:
        core.delete_namespace(name)
        core.delete_persistent_volume(f"models-{name}")
