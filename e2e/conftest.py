"""Where the e2e scenarios run.

- default (CI, no Docker): a private local control plane (tools/controlplane/up); the chart is installed
  with helm and the operator runs as a local process with the chart's settings and only its
  ServiceAccount token (kwok simulates the model pods, so nothing is served over HTTP);
- INFERGATE_E2E_TARGET=kind (e2e/run-kind): the cluster in $KUBECONFIG, where the chart's operator
  and the server image really run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.target import Target
from tests.integration.controlplane import start
from tests.integration.operator_process import OperatorProcess
from tests.packaging.cluster import Cluster
from tests.packaging.render import CHART, docs, helm_template
from tests.packaging.test_chart import env_of, operator_container

E2E = Path(__file__).resolve().parent
RELEASE, OPERATOR_NAMESPACE = "infergate", "infergate-system"


def plane_models_volume(namespace: str) -> str:
    """e2e/models-volume.yaml for the local plane: kwok nodes carry no e2e label and mount nothing."""
    out = []
    for doc in docs((E2E / "models-volume.yaml").read_text()):
        if doc["kind"] == "PersistentVolume":
            doc["metadata"]["name"] = f"{namespace}-models"
            doc["spec"].pop("nodeAffinity")
            doc["spec"]["hostPath"] = {"path": "/tmp/infergate-e2e-models"}
            doc["spec"]["claimRef"]["namespace"] = namespace
        else:
            doc["metadata"]["namespace"] = namespace
            doc["spec"]["volumeName"] = f"{namespace}-models"
        out.append(yaml.safe_dump(doc))
    return "---\n".join(out)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    namespace = os.environ.get("INFERGATE_E2E_NAMESPACE", "infergate-e2e")
    if os.environ.get("INFERGATE_E2E_TARGET") == "kind":
        yield Target("kind", namespace, dict(os.environ))
        return
    reuse = os.environ.get("INFERGATE_E2E_CLUSTER")
    plane = start(reuse or f"infergate-e2e-{os.getpid()}")
    cluster = Cluster(plane)
    operator: OperatorProcess | None = None
    try:
        cluster.helm(
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "180s",
        )
        cluster.ensure_namespace(namespace)
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=plane_models_volume(namespace))
        token = cluster.token_kubeconfig(
            OPERATOR_NAMESPACE, RELEASE, tmp_path_factory.mktemp("sa") / "kubeconfig"
        )
        settings = env_of(operator_container(docs(helm_template())))
        for key in ("INFERGATE_LISTEN_ADDRESS", "INFERGATE_HEALTH_PORT", "INFERGATE_METRICS_PORT"):
            settings.pop(key)
        process_env = {k: v for k, v in plane.env.items() if not k.startswith("INFERGATE_")}
        process_env["KUBECONFIG"] = str(token)
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        operator = OperatorProcess(env=process_env, log_path=log, extra_env=settings).start()
        yield Target("controlplane", namespace, plane.env)
    finally:
        if operator is not None:
            operator.stop()
        if not reuse:
            plane.down()
