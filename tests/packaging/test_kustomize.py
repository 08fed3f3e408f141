"""The kustomize base and overlays without a cluster: deterministic, in sync with the chart."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.packaging import sync_manifests
from tests.packaging.render import (
    MANIFESTS,
    OVERLAYS,
    Doc,
    Tools,
    docs,
    find,
    helm_template,
    kustomize,
    one,
    run,
)
from tests.packaging.test_chart import env_of, grants, operator_container

CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


def pod(documents: list[Doc]) -> dict[str, Any]:
    spec: dict[str, Any] = one(documents, "Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendering_is_byte_identical_across_runs_and_checkouts(
    bins: Tools, overlay: str, tmp_path: Path
) -> None:
    first = kustomize(overlay)
    assert first == kustomize(overlay)
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy)
    assert run([bins.kubectl, "kustomize", copy / "overlays" / overlay]) == first


def test_base_crds_are_copies_of_the_generated_ones() -> None:
    assert sync_manifests.stale() == [], "run `python -m tests.packaging.sync_manifests`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_names_its_namespace(overlay: str) -> None:
    for doc in docs(kustomize(overlay)):
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace"), (
                f"{doc['kind']} {doc['metadata']['name']} has no namespace"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_pod_matches_the_charts(overlay: str) -> None:
    """Same security context, probes, resources and volumes as the chart's default render."""
    ours, chart = docs(kustomize(overlay)), docs(helm_template())
    ignore = {"serviceAccountName"}
    assert {k: v for k, v in pod(ours).items() if k not in ignore | {"containers"}} == {
        k: v for k, v in pod(chart).items() if k not in ignore | {"containers"}
    }
    mine, theirs = operator_container(ours), operator_container(chart)
    for key in (
        "command",
        "ports",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
        "volumeMounts",
    ):
        assert mine[key] == theirs[key], key
    env, chart_env = env_of(mine), env_of(theirs)
    assert set(env) <= set(chart_env)
    for key in (
        "INFERGATE_GPU_RESOURCE_NAME",
        "INFERGATE_PROMETHEUS_ADDRESS",
        "INFERGATE_HEALTH_PORT",
        "INFERGATE_METRICS_PORT",
        "INFERGATE_LISTEN_ADDRESS",
    ):
        assert env[key] == chart_env[key], key


def test_cluster_wide_overlay_grants_what_the_chart_grants() -> None:
    ours, chart = docs(kustomize("cluster-wide")), docs(helm_template())
    assert grants(one(ours, "ClusterRole", "infergate-operator")["rules"]) == grants(
        one(chart, "ClusterRole", "infergate")["rules"]
    )
    assert grants(one(ours, "ClusterRole", "infergate-operator-crds")["rules"]) == grants(
        one(chart, "ClusterRole", "infergate-crds")["rules"]
    )
    assert not find(ours, "Role")
    assert one(ours, "ClusterKopfPeering")["metadata"]["name"] == "infergate"
    assert env_of(operator_container(ours))["INFERGATE_NAMESPACES"] == ""


def test_single_namespace_overlay_grants_what_the_charts_namespaced_mode_grants() -> None:
    ours = docs(kustomize("single-namespace"))
    chart = docs(helm_template({"watchNamespaces": ["infergate-models"]}))
    assert [r["metadata"]["name"] for r in find(ours, "ClusterRole")] == ["infergate-operator-crds"]
    role = one(ours, "Role")
    assert role["metadata"]["namespace"] == "infergate-models"
    assert grants(role["rules"]) == grants(one(chart, "Role")["rules"])
    binding = one(ours, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "infergate-operator", "namespace": "infergate-system"}
    ]
    assert one(ours, "KopfPeering")["metadata"]["namespace"] == "infergate-models"
    assert env_of(operator_container(ours))["INFERGATE_NAMESPACES"] == "infergate-models"
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
