"""The signed-models ValidatingAdmissionPolicy on the real API server: it refuses an unsigned or unpinned
InferenceModel in a namespace labelled infergate.io/require-signed-models=true and admits it elsewhere."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from infergate_operator import admission
from infergate_operator.spec import GROUP, PLURAL, VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.controlplane import ControlPlane

DIGEST = "d57519f20498cf9622e74e30ef7156c88af5114539c9b4ba375d81cd415398bb"
OCI = "oci://registry.example:5000/models/tiny@sha256:" + DIGEST

UNSIGNED: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "InferenceModel",
    "metadata": {"name": "tiny"},
    "spec": {
        "model": {"uri": OCI, "format": "onnx"},
        "runtime": {"backend": "onnxruntime"},
        "replicas": 1,
    },
}
SIGNATURE = {
    "bundleUri": "https://sigs.example/tiny.sig",
    "identity": "ci@example.com",
    "issuer": "https://oidc",
}


@pytest.fixture(scope="module")
def policy(crds: ControlPlane, api_client: client.ApiClient) -> Iterator[None]:
    admissions = client.AdmissionregistrationV1Api(api_client)
    admissions.create_validating_admission_policy(admission.build_policy())
    admissions.create_validating_admission_policy_binding(admission.build_binding())
    try:
        yield
    finally:
        admissions.delete_validating_admission_policy_binding(admission.POLICY_NAME)
        admissions.delete_validating_admission_policy(admission.POLICY_NAME)


@pytest.fixture
def labelled(api_client: client.ApiClient) -> Iterator[str]:
    name = f"signed-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    labels = {admission.REQUIRE_LABEL: "true"}
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def _create(api_client: client.ApiClient, namespace: str, body: dict[str, Any], name: str) -> None:
    body = copy.deepcopy(body)
    body["metadata"]["name"] = name
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def _refusal(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    """The API server's refusal of `body`, waiting for the policy to take effect (its informers sync)."""
    deadline = time.monotonic() + 30
    attempt = 0
    while True:
        attempt += 1
        try:
            _create(api_client, namespace, body, f"m{attempt}")
        except ApiException as exc:
            if exc.status not in (403, 422):
                raise
            return str(exc.body)
        client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, f"m{attempt}"
        )
        assert time.monotonic() < deadline, "the policy never refused the model"
        time.sleep(0.5)


def test_an_unsigned_model_is_refused_in_a_labelled_namespace_naming_the_field(
    policy: None, api_client: client.ApiClient, labelled: str
) -> None:
    message = _refusal(api_client, labelled, UNSIGNED)
    assert "spec.model.signature: required here" in message
    assert admission.POLICY_NAME in message


def test_a_signed_pinned_model_is_admitted_in_a_labelled_namespace(
    policy: None, api_client: client.ApiClient, labelled: str
) -> None:
    _refusal(api_client, labelled, UNSIGNED)  # the policy is in force
    signed = copy.deepcopy(UNSIGNED)
    signed["spec"]["model"]["signature"] = SIGNATURE
    _create(api_client, labelled, signed, "signed")


def test_an_unsigned_model_is_admitted_in_an_unlabelled_namespace(
    policy: None, api_client: client.ApiClient, labelled: str, namespace: str
) -> None:
    _refusal(api_client, labelled, UNSIGNED)  # the policy is in force
    _create(api_client, namespace, UNSIGNED, "unsigned")
