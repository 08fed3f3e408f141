"""Integration fixtures: one real control plane per test session, one namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.integration.controlplane import ControlPlane, install_crds, start
from tests.integration.models import models_pvc


@pytest.fixture(scope="session")
def controlplane() -> Iterator[ControlPlane]:
    cluster = os.environ.get("INFERGATE_TEST_CLUSTER", f"infergate-test-{os.getpid()}")
    plane = start(cluster)
    try:
        yield plane
    finally:
        if not os.environ.get("INFERGATE_TEST_CLUSTER"):
            plane.down()


@pytest.fixture(scope="session")
def api_client(controlplane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(controlplane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def crds(controlplane: ControlPlane) -> ControlPlane:
    """The InferenceModel CRD, kopf's peering CRDs and the operator's ClusterKopfPeering object."""
    install_crds(controlplane)
    return controlplane


@pytest.fixture
def model_namespace(api_client: client.ApiClient, namespace: str) -> str:
    """A namespace with the `models` PVC that the examples' pvc:// URIs name."""
    models_pvc(api_client, namespace)
    return namespace
