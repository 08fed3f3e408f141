"""The real-node tier: a local cluster whose node `real-cpu-0` runs the built server image in real pods
(kubelet + containerd + runc, DESIGN.md §10), the operator as a local process, the examples' files on a
read-only hostPath volume. One cluster per session (the host has one real node), one namespace per test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.integration.controlplane import REPO, ControlPlane, start
from tests.integration.models import models_pvc
from tests.integration.operator_process import OperatorProcess, free_port
from tests.integration.waiting import wait_for
from tests.realnode.diagnostics import describe_namespace
from tests.realnode.realnode import IMAGE, stage_models

pytestmark = pytest.mark.realnode
HERE = Path(__file__).resolve().parent


def _run(args: list[str], env: dict[str, str], timeout: int) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """A failed real-node test's report carries what its namespace and the operator looked like then."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    funcargs = getattr(item, "funcargs", {})
    if report.when != "call" or not report.failed or "real_namespace" not in funcargs:
        return
    operator = funcargs.get("real_operator")
    log = operator.log_path if isinstance(operator, OperatorProcess) else None
    try:
        text = describe_namespace(funcargs["real_api"], funcargs["real_namespace"], log)
    except Exception as error:  # the diagnostics must never hide the failure itself
        text = f"diagnostics failed: {error!r}"
    report.sections.append(("real node diagnostics", text))


def wants_autoscaling(session: pytest.Session) -> bool:
    """metrics-server, KEDA and its HTTP add-on (minutes to build cold) only for sessions that test them."""
    return any(item.path == HERE / "test_autoscaling.py" for item in session.items)


def image_variants(session: pytest.Session) -> list[str]:
    """Images to import: the vLLM one (4 GB, ~3 min, twice its size on disk) only for sessions using it."""
    if any(item.path == HERE / "test_vllm.py" for item in session.items):
        return os.environ.get("INFERGATE_IMAGE_VARIANTS", "cpu vllm").split()
    return ["cpu"]


def wants_node_cache(session: pytest.Session) -> bool:
    """The session operator gets a node cache (INFERGATE_NODE_CACHE) only for sessions that test it."""
    # By path: tests/server has a test_node_cache.py too, and `make test` collects both (that gave every
    # real-node test a hostPath node cache, which a Pod Security "restricted" namespace refuses).
    return any(item.path == HERE / "test_node_cache.py" for item in session.items)


@pytest.fixture(scope="session")
def node_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node cache's hostPath on the real node (this host): owned by the pods' uid, as the docs require."""
    folder = tmp_path_factory.mktemp("node-cache")
    os.chown(folder, 65532, 65532)  # a bind mount: the 0700 folders above it do not matter in the pods
    return folder


@pytest.fixture(scope="session")
def real_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    cluster = os.environ.get("INFERGATE_REAL_TEST_CLUSTER", f"igreal-{os.getpid()}")
    plane = start(cluster, real_node=True, autoscaling=wants_autoscaling(request.session))
    try:
        # Built by `make test` beforehand (tools/image/build: a no-op when nothing changed).
        _run(
            [str(REPO / "tools" / "image" / "import"), *image_variants(request.session)],
            plane.env,
            timeout=1200,
        )
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
    real_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    extra_env = {
        "INFERGATE_SERVER_IMAGE": IMAGE,
        "INFERGATE_IMAGE_PULL_POLICY": "Never",
        # `up`'s Prometheus scrapes the real node's pods; Argo's controller runs on the host, without
        # cluster DNS, and reaches the canary Service by its cluster IP (kube-proxy's rules on the host).
        "INFERGATE_PROMETHEUS_ADDRESS": prometheus_address(real_plane),
        "INFERGATE_GOLDEN_URL_TEMPLATE": "http://{service_ip}:{port}/v2/models/{model}/golden",
        # test_quarantine.py makes one replica go wrong through the debug annotation (off by default).
        "INFERGATE_DEBUG_FAULT_INJECTION": "true",
    }
    if wants_node_cache(request.session):
        extra_env["INFERGATE_NODE_CACHE"] = f"hostPath:{request.getfixturevalue('node_cache_dir')}"
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
        # The host has one real node with 2 cores: the next test starts once this one's pods are gone, so
        # that pods still draining here never hold the CPU the next test's pods request.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not core.list_namespaced_pod(name).items, 90, f"namespace {name} emptied")
