"""The chart and the kustomize overlays on a real control plane (tools/controlplane/up, a private cluster):
server-side dry-run of every render, `helm install`, RBAC proven with the ServiceAccount's own token,
the operator reconciling the examples with only that token, and `helm uninstall` keeping CRDs and CRs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.controlplane import ControlPlane
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.packaging.cluster import Cluster
from tests.packaging.render import CHART, CHART_CASES, OVERLAYS, REPO, docs, helm_template, kustomize
from tests.packaging.test_argocd_health import health
from tests.packaging.test_chart import REQUIRED_RULES, env_of, operator_container

pytestmark = pytest.mark.integration

RELEASE, NAMESPACE = "infergate", "infergate-system"
# The operator's namespace enforces (and warns about) the restricted Pod Security Standard.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
SCOPED_RELEASE, SCOPED_NAMESPACE, WATCHED = "scoped", "infergate-scoped", "team-x"
EXAMPLES = sorted((REPO / "examples" / "models").glob("*/inferencemodel.yaml"))
MINIMAL_MODEL = f"""
apiVersion: serving.infergate.io/v1alpha1
kind: InferenceModel
metadata: {{name: minimal}}
spec:
  model: {{uri: "https://models.invalid/m.onnx", format: onnx, sha256: "{"0" * 64}"}}
  runtime: {{backend: onnxruntime}}
  replicas: 1
"""
# Exercises the HPA and PDB verbs of the operator's role for real (autoscaled, at least 2 replicas).
AUTOSCALED_MODEL = f"""
apiVersion: serving.infergate.io/v1alpha1
kind: InferenceModel
metadata: {{name: autoscaled}}
spec:
  model: {{uri: "https://models.invalid/m.onnx", format: onnx, sha256: "{"0" * 64}"}}
  runtime: {{backend: onnxruntime}}
  hardware: {{cpu: "1", memory: 1Gi}}
  autoscaling: {{minReplicas: 2, maxReplicas: 4}}
"""
# The examples fetch from pvc://models/…: a statically bound volume so their pods can be scheduled.
MODELS_VOLUME = """
apiVersion: v1
kind: PersistentVolume
metadata: {name: examples-models}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/infergate-examples-models}
  claimRef: {namespace: examples, name: models}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models, namespace: examples}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: examples-models
  resources: {requests: {storage: 1Gi}}
"""
# Stand-ins for the Prometheus Operator's CRDs (open schemas): enough for the API server to accept
# ServiceMonitor/PrometheusRule kinds in a dry run; the real CRDs are not part of the local plane.
MONITORING_CRDS = "\n---\n".join(
    f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.monitoring.coreos.com}}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {plural[:-1]}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
"""
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules"))
)


def resource_name(group: str, resource: str) -> str:
    base, _, sub = resource.partition("/")
    name = f"{base}.{group}" if group else base
    return f"{name}/{sub}" if sub else name


ALLOWED = sorted(
    (verb, resource_name(group, resource))
    for (group, resource), verbs in REQUIRED_RULES.items()
    for verb in verbs
)
DENIED_IN_NAMESPACE = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "pods"),
    ("create", "pods/exec"),
    ("delete", "inferencemodels.serving.infergate.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts/token"),
    ("update", "inferencemodels.serving.infergate.io/scale"),
]
DENIED_CLUSTER = [
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "namespaces"),
    ("patch", "nodes"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
]


@pytest.fixture(scope="module")
def cluster(plane: ControlPlane) -> Cluster:
    return Cluster(plane)


@pytest.fixture(scope="module")
def installed(cluster: Cluster) -> str:
    """`helm install` of the chart, cluster-wide, as users do it; returns helm's output (with NOTES).
    The namespace enforces the restricted Pod Security Standard, so a pod that breaks it never starts."""
    cluster.ensure_namespace(NAMESPACE, RESTRICTED)
    out = cluster.helm(
        "upgrade",
        "--install",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    )
    return out


@pytest.fixture(scope="module")
def scoped(cluster: Cluster) -> str:
    """A second release in namespaced mode, watching only WATCHED."""
    cluster.ensure_namespace(WATCHED)
    return cluster.helm(
        "upgrade",
        "--install",
        SCOPED_RELEASE,
        CHART,
        "--namespace",
        SCOPED_NAMESPACE,
        "--create-namespace",
        "--set",
        f"watchNamespaces={{{WATCHED}}}",
        # The signed-models policy is cluster-scoped: the first release in this cluster installed it.
        "--set",
        "signedModels.policy=false",
        "--wait",
        "--timeout",
        "180s",
    )


@pytest.fixture(scope="module")
def token(cluster: Cluster, installed: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster.token_kubeconfig(NAMESPACE, RELEASE, tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture(scope="module")
def scoped_token(cluster: Cluster, scoped: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster.token_kubeconfig(
        SCOPED_NAMESPACE, f"{SCOPED_RELEASE}-infergate", tmp_path_factory.mktemp("sa") / "kubeconfig"
    )


def test_every_rendered_chart_and_overlay_passes_server_side_dry_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", CHART / "crds")
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=MONITORING_CRDS)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.ensure_namespace(NAMESPACE, RESTRICTED)
    for ns in ("infergate-models", "team-b"):
        cluster.ensure_namespace(ns)
    # The production render's node-cache sweep mounts a hostPath: its namespace admits it.
    cluster.ensure_namespace("infergate-node-cache", {"pod-security.kubernetes.io/enforce": "privileged"})
    renders = {
        f"chart-{label}": helm_template(values, release="dryrun", monitoring=monitoring)
        for label, values, monitoring in CHART_CASES
    }
    renders |= {f"kustomize-{overlay}": kustomize(overlay) for overlay in OVERLAYS}
    for label, text in renders.items():
        path = tmp_path / f"{label}.yaml"
        path.write_text(text)
        result = cluster.kubectl_full(
            "apply", "--dry-run=server", "--server-side", "--force-conflicts", "-f", path, "-o", "name"
        )
        assert result.returncode == 0, f"{label}: {result.stderr[-3000:]}"
        applied = result.stdout.split()
        assert len(applied) == len(docs(text)), f"{label}: {applied}"
        assert "PodSecurity" not in result.stderr, f"{label}: {result.stderr}"
    assert "dryrun" not in cluster.kubectl("get", "clusterroles", "-o", "name")


def test_helm_install_runs_the_operator_and_explains_itself(cluster: Cluster, installed: str) -> None:
    assert "STATUS: deployed" in installed
    assert "WARNING: image.digest is empty" in installed
    assert "`helm uninstall` does not delete" in installed
    deployment = cluster.get("deployment", RELEASE, "-n", NAMESPACE)
    assert deployment["status"].get("availableReplicas") == 1
    for crd in (
        "inferencemodels.serving.infergate.io",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    ):
        established = cluster.kubectl(
            "get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        )
        assert established == "True", crd
    assert cluster.get("clusterkopfpeering", "infergate")["metadata"]["name"] == "infergate"
    listing = cluster.helm("list", "-n", NAMESPACE, "-o", "yaml")
    assert yaml.safe_load(listing)[0]["status"] == "deployed"


@pytest.mark.parametrize(("verb", "resource"), ALLOWED)
def test_operator_token_may_do_its_job_in_any_namespace(
    cluster: Cluster, token: Path, verb: str, resource: str
) -> None:
    cluster.ensure_namespace("team-a")
    assert cluster.can_i(token, verb, resource, "team-a")


@pytest.mark.parametrize(("verb", "resource"), DENIED_IN_NAMESPACE)
def test_operator_token_is_denied_outside_its_role(
    cluster: Cluster, token: Path, verb: str, resource: str
) -> None:
    assert not cluster.can_i(token, verb, resource, "kube-system")
    assert not cluster.can_i(token, verb, resource, "team-a")


@pytest.mark.parametrize(("verb", "resource"), DENIED_CLUSTER)
def test_operator_token_cannot_escalate_cluster_wide(
    cluster: Cluster, token: Path, verb: str, resource: str
) -> None:
    assert not cluster.can_i(token, verb, resource, None)


def test_operator_token_reading_secrets_is_refused_by_the_api_server(cluster: Cluster, token: Path) -> None:
    """Not only `can-i`: a real request with the token gets 403."""
    result = cluster.as_token(token, "get", "secrets", "-n", "kube-system")
    assert result.returncode != 0
    assert "Forbidden" in result.stderr
    assert "system:serviceaccount:infergate-system:infergate" in result.stderr
    listing = cluster.as_token(token, "get", "inferencemodels.serving.infergate.io", "-A")
    assert listing.returncode == 0, listing.stderr


@pytest.mark.parametrize(("verb", "resource"), ALLOWED)
def test_namespaced_token_may_do_its_job_in_its_namespace_only(
    cluster: Cluster, scoped_token: Path, verb: str, resource: str
) -> None:
    assert cluster.can_i(scoped_token, verb, resource, WATCHED)
    assert not cluster.can_i(scoped_token, verb, resource, "team-a")


def test_namespaced_token_has_no_cluster_wide_reach(cluster: Cluster, scoped_token: Path) -> None:
    assert not cluster.can_i(scoped_token, "list", "inferencemodels.serving.infergate.io", None)
    assert not cluster.can_i(scoped_token, "list", "namespaces", None)
    assert not cluster.can_i(scoped_token, "get", "secrets", WATCHED)
    assert not cluster.can_i(scoped_token, "patch", "clusterkopfpeerings.kopf.dev", None)
    assert cluster.can_i(scoped_token, "patch", "kopfpeerings.kopf.dev", WATCHED)
    assert cluster.can_i(scoped_token, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
    assert cluster.can_i(scoped_token, "watch", "nodes", None)  # which deleted nodes took replicas
    assert not cluster.can_i(scoped_token, "get", "nodes", None)  # names only, through the watch
    assert cluster.get("kopfpeering", "infergate", "-n", WATCHED)["metadata"]["namespace"] == WATCHED


def test_helm_upgrade_moves_grants_with_the_watched_namespaces(
    cluster: Cluster, scoped: str, scoped_token: Path
) -> None:
    """Adding a namespace adds its Role and peering; the token gains it; nothing stale stays behind."""
    cluster.ensure_namespace("team-y")
    cluster.helm(
        "upgrade",
        SCOPED_RELEASE,
        CHART,
        "--namespace",
        SCOPED_NAMESPACE,
        "--reuse-values",
        "--set",
        f"watchNamespaces={{{WATCHED},team-y}}",
        "--wait",
        "--timeout",
        "180s",
    )
    assert cluster.can_i(scoped_token, "patch", "deployments.apps", "team-y")
    assert cluster.get("kopfpeering", "infergate", "-n", "team-y")["metadata"]["name"] == "infergate"
    env = {
        e["name"]: e.get("value")
        for e in cluster.get("deployment", f"{SCOPED_RELEASE}-infergate", "-n", SCOPED_NAMESPACE)["spec"][
            "template"
        ]["spec"]["containers"][0]["env"]
    }
    assert env["INFERGATE_NAMESPACES"] == f"{WATCHED},team-y"
    cluster.helm(
        "upgrade",
        SCOPED_RELEASE,
        CHART,
        "--namespace",
        SCOPED_NAMESPACE,
        "--reuse-values",
        "--set",
        "watchNamespaces={team-y}",
        "--wait",
        "--timeout",
        "180s",
    )
    assert not cluster.can_i(scoped_token, "patch", "deployments.apps", WATCHED)
    assert "NotFound" in cluster.kubectl(
        "get", "role", f"{SCOPED_RELEASE}-infergate", "-n", WATCHED, check=False
    )


def operator_runnable() -> str | None:
    """Why the operator cannot run here, or None when `python -m infergate_operator` is usable."""
    result = subprocess.run(
        [sys.executable, "-m", "infergate_operator", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        return f"`python -m infergate_operator` is not runnable yet: {result.stderr.strip()[-300:]}"
    return None


def model_manifests() -> list[dict[str, Any]]:
    manifests = [yaml.safe_load(p.read_text()) for p in EXAMPLES] or [yaml.safe_load(MINIMAL_MODEL)]
    return [*manifests, yaml.safe_load(AUTOSCALED_MODEL)]


def test_operator_with_only_the_charts_token_and_settings_reconciles_examples(
    cluster: Cluster, installed: str, token: Path, tmp_path: Path
) -> None:
    reason = operator_runnable()
    if reason:
        pytest.skip(reason)
    # The chart's own settings, as the pod would get them (ports and address changed for a local process).
    env = env_of(operator_container(docs(helm_template())))
    for key in ("INFERGATE_LISTEN_ADDRESS", "INFERGATE_HEALTH_PORT", "INFERGATE_METRICS_PORT"):
        env.pop(key)
    process_env = {k: v for k, v in cluster.plane.env.items() if not k.startswith("INFERGATE_")}
    process_env["KUBECONFIG"] = str(token)
    namespace = "examples"
    cluster.ensure_namespace(namespace)
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=MODELS_VOLUME)
    operator = OperatorProcess(env=process_env, log_path=tmp_path / "operator.log", extra_env=env).start()
    try:
        peering = cluster.get("clusterkopfpeering", "infergate")
        wait_for(
            lambda: cluster.get("clusterkopfpeering", "infergate").get("status"),
            30,
            f"the operator to register in ClusterKopfPeering infergate (was {peering.get('status')})",
        )
        models = model_manifests()
        nodes = cluster.get("nodes")["items"]
        products = {n["metadata"]["labels"].get("nvidia.com/gpu.product") for n in nodes} - {None}
        for manifest in models:
            cluster.kubectl(
                "apply", "--server-side", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest)
            )
        for manifest in models:
            name = manifest["metadata"]["name"]

            product = ((manifest["spec"].get("hardware") or {}).get("gpu") or {}).get("product")
            expected = "Ready" if product is None or product in products else "Degraded"

            def settled(name: str = name, expected: str = expected) -> dict[str, Any] | None:
                """Observed at its current generation and in the expected phase (kwok runs the pods)."""
                obj = cluster.get("inferencemodel.serving.infergate.io", name, "-n", namespace)
                status = obj.get("status") or {}
                if status.get("observedGeneration") != obj["metadata"]["generation"]:
                    return None
                if status.get("phase") != expected:
                    return None
                found: dict[str, Any] = obj
                return found

            obj = wait_for(settled, 120, f"InferenceModel {name} to be {expected} (log: {operator.log_path})")
            assert health(obj)[0] == {"Ready": "Healthy", "Degraded": "Degraded"}[expected], health(obj)
            if expected == "Degraded":  # asks for a GPU product no node of the plane has
                degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
                assert degraded["reason"] == "Unschedulable", degraded
            workload = (
                "rollout.argoproj.io"
                if (manifest["spec"].get("rollout") or {}).get("strategy") == "Canary"
                else "deployment"
            )
            children = [(workload, name), ("service", name), ("configmap", f"{name}-config")]
            if manifest["spec"].get("autoscaling"):
                children += [("horizontalpodautoscaler", name), ("poddisruptionbudget", name)]
            for kind, child in children:
                got = cluster.get(kind, child, "-n", namespace, "--show-managed-fields")
                owners = got["metadata"].get("ownerReferences") or []
                assert any(o["kind"] == "InferenceModel" and o["name"] == name for o in owners), (kind, child)
                managers = {m["manager"] for m in got["metadata"].get("managedFields") or []}
                assert "infergate" in managers, (kind, child, managers)
        log = operator.log()
        assert "Forbidden" not in log, log[-3000:]
        assert " 403" not in log, log[-3000:]
    finally:
        operator.stop()


def test_helm_uninstall_keeps_crds_and_models(cluster: Cluster, installed: str) -> None:
    """The documented policy: CRDs (chart crds/) and InferenceModels survive an uninstall."""
    cluster.ensure_namespace("kept")
    cluster.kubectl("apply", "--server-side", "-n", "kept", "-f", "-", stdin=MINIMAL_MODEL)
    cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    assert cluster.kubectl("get", "crd", "inferencemodels.serving.infergate.io", "-o", "name")
    assert cluster.kubectl(
        "get", "inferencemodel.serving.infergate.io", "minimal", "-n", "kept", "-o", "name"
    )
    gone = cluster.kubectl("get", "clusterrole", RELEASE, check=False)
    assert "NotFound" in gone
    gone = cluster.kubectl("get", "deployment", RELEASE, "-n", NAMESPACE, check=False)
    assert "NotFound" in gone
