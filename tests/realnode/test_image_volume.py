"""spec.model.imageVolume on the real node: the tiny model, pushed as an OCI image (`infergate-server push
--image`) to a real registry on 127.0.0.1, is pulled by the node's containerd and mounted read-only by the
kubelet as an image volume; the fetch step verifies the mounted file in place (nothing downloaded or copied)
and the server serves it. A sha256 that the image's file does not have stops the pod before any server
starts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.controlplane import ControlPlane, controlplane_path
from tests.integration.models import REPO, Models
from tests.integration.operator_process import OperatorProcess
from tests.realnode.realnode import (
    assert_refused_before_any_server,
    build_models,
    infer,
    infer_when_routed,
    outputs_by_name,
    pods,
    real_example,
    service_url,
    wrong_sha256,
)
from tests.server.registry import Registry, start_registry

pytestmark = [pytest.mark.integration, pytest.mark.realnode]


@pytest.fixture(scope="module")
def registry(real_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry on 127.0.0.1 that the node's containerd pulls from over plain HTTP, declared in the
    node's own hosts directory (tools/controlplane/node-up: config_path)."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    hosts = controlplane_path(real_plane.env, "NODE_DIR") / "certs.d" / reg.host
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text(
        f'server = "http://{reg.host}"\n[host."http://{reg.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    yield reg
    shutil.rmtree(hosts, ignore_errors=True)
    reg.stop()


@pytest.fixture(scope="module")
def tiny_image(registry: Registry) -> tuple[str, str]:
    """(the pinned oci:// uri of the tiny model's image, the model's path inside it)."""
    from infergate_server.oci_push import push

    build_models.build("tiny-onnx")
    example = REPO / "examples" / "models" / "tiny-onnx"
    model = example / yaml.safe_load((example / "server.yaml").read_text())["model"]["path"]
    return push(model, f"oci://{registry.host}/models/tiny-image:1", image=True), model.name


def imaged(tiny_image: tuple[str, str], name: str) -> dict[str, Any]:
    body = real_example("tiny-onnx", rename=name)
    body["spec"]["model"]["uri"] = tiny_image[0]
    body["spec"]["model"]["imageVolume"] = {"path": tiny_image[1]}
    return body


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def test_an_image_volume_model_is_mounted_verified_in_place_and_served(
    real_api: client.ApiClient,
    real_namespace: str,
    real_operator: OperatorProcess,
    tiny_image: tuple[str, str],
) -> None:
    models = Models(real_api, real_namespace)
    body = imaged(tiny_image, "imaged")
    models.create(body)
    obj = models.wait_condition("imaged", "GoldenPassed", "True", timeout_s=180)
    models.wait_available("imaged", timeout_s=60)
    assert condition(obj, "ArtifactVerified")["status"] == "True"

    (pod,) = pods(real_api, real_namespace, "imaged")
    (volume,) = [v for v in pod.spec.volumes if v.name == "model-image"]
    assert volume.image.reference == tiny_image[0].removeprefix("oci://")
    (fetch,) = pod.status.init_container_statuses
    assert fetch.state.terminated is not None
    assert fetch.state.terminated.exit_code == 0
    startup = obj["status"].get("startup") or {}
    (replica,) = startup.get("replicas") or [{}]
    assert replica.get("bytes", {}).get("fetch", 0) == 0, startup  # the kubelet pulled; nothing was copied

    url = service_url(real_api, real_namespace, "imaged")
    infer_when_routed(url, "imaged", body["spec"]["golden"]["cases"][0]["inputs"])
    case = body["spec"]["golden"]["cases"][1]
    result = outputs_by_name(infer(url, "imaged", case["inputs"]))
    assert result["y"]["data"] == pytest.approx(case["expected"]["y"]["data"], abs=case["atol"])


def test_an_image_whose_file_does_not_match_sha256_never_starts_a_server(
    real_api: client.ApiClient,
    real_namespace: str,
    real_operator: OperatorProcess,
    tiny_image: tuple[str, str],
) -> None:
    models = Models(real_api, real_namespace)
    models.create(wrong_sha256(imaged(tiny_image, "imaged-wrong")))
    assert_refused_before_any_server(models, "imaged-wrong")
