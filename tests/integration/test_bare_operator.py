"""DESIGN §5: `kubectl apply -f crds/` then `python -m infergate_operator` is enough, on a fresh cluster.

kopf, run with a peering name, pauses all its watches in silence while its peering CRD or object is
missing. The operator must never idle like that: with crds/ it creates its peering object and works; with
only the InferenceModel CRD it runs standalone and says why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.integration.controlplane import ControlPlane, start
from tests.integration.models import REPO, Models, example, models_pvc
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bare_plane() -> Iterator[ControlPlane]:
    """A cluster of its own: nothing applied but what each test applies (no peering CRDs or objects)."""
    base = os.environ.get("INFERGATE_TEST_CLUSTER", f"infergate-test-{os.getpid()}")
    plane = start(f"{base}-bare")
    try:
        yield plane
    finally:
        plane.down()


def _models(plane: ControlPlane, api: client.ApiClient) -> Models:
    namespace = f"bare-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    models_pvc(api, namespace)
    return Models(api, namespace)


def _tiny(name: str) -> dict[str, object]:
    body = example("tiny-onnx")
    body["metadata"]["name"] = name
    return body


def test_bare_operator_reconciles(bare_plane: ControlPlane, tmp_path: Path) -> None:
    api = config.new_client_from_config(config_file=str(bare_plane.kubeconfig))
    try:
        # Only the InferenceModel CRD: no kopf peering CRDs at all -> standalone, said loudly.
        bare_plane.kubectl(
            "apply", "--server-side", "-f", str(REPO / "crds" / "serving.infergate.io_inferencemodels.yaml")
        )
        bare_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        models = _models(bare_plane, api)
        first = OperatorProcess(bare_plane.env, tmp_path / "standalone.log").start()
        try:
            models.create(_tiny("alone"))
            models.wait_available("alone", timeout_s=90)
            assert "running standalone, without peering" in first.log()
            assert "clusterkopfpeerings.kopf.dev is not installed" in first.log()
        finally:
            first.stop()

        # Then everything in crds/ (which ships kopf's peering CRDs), and still no peering object.
        bare_plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        bare_plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        custom = client.CustomObjectsApi(api)
        assert not custom.list_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings")["items"]
        second = OperatorProcess(bare_plane.env, tmp_path / "peering.log").start()
        try:
            models.create(_tiny("peered"))
            models.wait_available("peered", timeout_s=90)
            assert "created the peering object ClusterKopfPeering/infergate" in second.log()
            assert "running standalone" not in second.log()
            peering = wait_for(
                lambda: custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", "infergate"
                ).get("status"),
                30,
                "the operator's record in ClusterKopfPeering infergate",
            )
            assert len(peering) == 1, peering
        finally:
            second.stop()
    finally:
        api.close()


def _peering_status(custom: client.CustomObjectsApi) -> dict[str, object] | None:
    peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "infergate")
    status: dict[str, object] | None = peering.get("status")
    return status
