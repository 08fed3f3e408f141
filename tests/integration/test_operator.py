"""The operator as a real process against the real control plane: examples converge, changes and hand
edits are reconciled, deletion collects children, and invalid specs never leave children behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.controlplane import ControlPlane
from tests.integration.models import REPO, Models, example, load_yaml, minimal
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for
from tests.unit.igm import merge_patch

pytestmark = pytest.mark.integration

EXAMPLES = sorted(
    p.name for p in (REPO / "examples" / "models").iterdir() if (p / "inferencemodel.yaml").exists()
)


@pytest.fixture(scope="module")
def operator(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    process = OperatorProcess(crds.env, tmp_path_factory.mktemp("operator") / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def models(api_client: client.ApiClient, model_namespace: str, operator: OperatorProcess) -> Models:
    return Models(api_client, model_namespace)


def pod_nodes(models: Models, name: str) -> list[client.V1Node]:
    pods = models.core.list_namespaced_pod(
        models.namespace, label_selector=f"app.kubernetes.io/instance={name}"
    )
    return [models.core.read_node(p.spec.node_name) for p in pods.items if p.spec.node_name]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_converges(models: Models, name: str) -> None:
    body = example(name)
    models.create(body)
    model = body["metadata"]["name"]
    models.wait_available(model)

    # Available means at least one replica serves; the rest may still be starting at that moment.
    def all_ready() -> dict[str, Any] | None:
        current = models.get(model)
        st = current.get("status") or {}
        return current if st.get("readyReplicas") == st.get("replicas") else None

    obj = wait_for(all_ready, 60, f"{model}: every replica ready")
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["readyReplicas"] == status["replicas"] >= 1
    assert status["endpoint"].startswith(f"http://{model}.{models.namespace}.svc:")
    children = models.children(model)
    assert children["ConfigMap"] == [f"{model}-config"]
    assert children["Service"] == [model]
    assert children["Deployment"] == [model]
    deployment = models.apps.read_namespaced_deployment(model, models.namespace)
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("InferenceModel", model, True)
    gpu = (body["spec"].get("hardware") or {}).get("gpu")
    container = next(c for c in deployment.spec.template.spec.containers if c.name != "fetch")
    if gpu:
        assert container.resources.limits["nvidia.com/gpu"] == str(gpu.get("count", 1))
        for node in pod_nodes(models, model):
            assert node.metadata.labels["nvidia.com/gpu.product"] == gpu["product"]
    else:
        assert "nvidia.com/gpu" not in (container.resources.limits or {})
        for node in pod_nodes(models, model):
            assert "nvidia.com/gpu.product" not in node.metadata.labels


def test_spec_changes_reach_children(models: Models) -> None:
    models.create(minimal("change", replicas=1))
    models.wait_available("change")
    hash_before = models.apps.read_namespaced_deployment(
        "change", models.namespace
    ).spec.template.metadata.annotations

    models.patch("change", {"spec": {"replicas": 3, "image": "registry.invalid/infergate/server:v2"}})
    models.wait_available("change")
    deployment = models.apps.read_namespaced_deployment("change", models.namespace)
    assert deployment.spec.replicas == 3
    assert {c.image for c in deployment.spec.template.spec.containers} == {
        "registry.invalid/infergate/server:v2"
    }
    assert models.children("change")["PodDisruptionBudget"] == ["change"]

    golden = {
        "cases": [
            {
                "name": "one",
                "inputs": {"x": {"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}},
                "expected": {"y": {"shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}},
            }
        ]
    }
    models.patch("change", {"spec": {"golden": golden}})
    models.wait_available("change")
    configmap = models.core.read_namespaced_config_map("change-config", models.namespace)
    assert '"one"' in configmap.data["server.yaml"] or "name: one" in configmap.data["server.yaml"]
    hash_after = models.apps.read_namespaced_deployment(
        "change", models.namespace
    ).spec.template.metadata.annotations
    assert hash_after != hash_before  # a golden edit rolls the pods

    models.patch("change", {"spec": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}})
    wait_for(lambda: "HorizontalPodAutoscaler" in models.children("change"), 30, "an HPA")
    hpa = client.AutoscalingV2Api(models.api).read_namespaced_horizontal_pod_autoscaler(
        "change", models.namespace
    )
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    assert hpa.spec.scale_target_ref.name == "change"

    def replicas_left_to_hpa() -> bool:
        managed = models.apps.read_namespaced_deployment("change", models.namespace).metadata.managed_fields
        ours = next(m for m in managed if m.manager == "infergate")
        return "f:replicas" not in str(ours.fields_v1.get("f:spec", {}))

    wait_for(replicas_left_to_hpa, 10, "the operator to give up spec.replicas to the HPA")

    models.patch("change", {"spec": {"autoscaling": None, "replicas": 1}})
    wait_for(lambda: "HorizontalPodAutoscaler" not in models.children("change"), 30, "the HPA deleted")
    wait_for(lambda: "PodDisruptionBudget" not in models.children("change"), 30, "the PDB deleted")
    models.wait_available("change")


def test_deleted_and_edited_children_are_repaired(crds: ControlPlane, models: Models) -> None:
    models.create(minimal("repair", replicas=2))
    models.wait_available("repair")
    uid = models.core.read_namespaced_service("repair", models.namespace).metadata.uid

    models.core.delete_namespaced_service("repair", models.namespace)
    wait_for(
        lambda: (s := _service(models, "repair")) is not None and s.metadata.uid != uid,
        10,
        "the Service put back",
    )

    # By hand, as a person would: kubectl's field managers are overruled.
    crds.kubectl(
        "patch",
        "deployment",
        "repair",
        "-n",
        models.namespace,
        "--type",
        "strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"server","image":"evil.invalid/x:1"}]}}}}',
    )
    wait_for(
        lambda: (
            {
                c.image
                for c in models.apps.read_namespaced_deployment(
                    "repair", models.namespace
                ).spec.template.spec.containers
            }
            == {"registry.invalid/infergate/server:test"}
        ),
        10,
        "the hand-edited image put back",
    )
    crds.kubectl(
        "patch", "configmap", "repair-config", "-n", models.namespace, "-p", '{"data":{"server.yaml":"{}"}}'
    )
    wait_for(
        lambda: (
            models.core.read_namespaced_config_map("repair-config", models.namespace).data["server.yaml"]
            != "{}"
        ),
        10,
        "the hand-edited ConfigMap put back",
    )


def test_conflict_with_another_controller_is_reported_not_fought(
    crds: ControlPlane, operator: OperatorProcess, models: Models
) -> None:
    models.create(minimal("contested", replicas=2))
    models.wait_available("contested")
    before = _applies(operator)
    # Another controller takes spec.replicas with a forced server-side apply.
    crds.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=other-controller",
        "-f",
        "-",
        stdin=f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: contested, namespace: {models.namespace}}}
spec: {{replicas: 4}}
""",
    )
    models.patch("contested", {"spec": {"replicas": 3}})
    obj = models.wait_condition("contested", "Degraded", "True", "FieldConflict", timeout_s=30)
    assert "other-controller" in obj["status"]["message"]
    # No tug of war: the other controller's value stands and the operator does not retry in a hot loop.
    assert models.apps.read_namespaced_deployment("contested", models.namespace).spec.replicas == 4
    applies = _applies(operator) - before
    assert applies < 40, f"{applies} applies in the conflict window"


def _applies(operator: OperatorProcess) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("infergate_operator_api_writes_total{") and 'verb="apply"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _service(models: Models, name: str) -> client.V1Service | None:
    try:
        return models.core.read_namespaced_service(name, models.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_deleting_the_model_collects_its_children(models: Models) -> None:
    models.create(minimal("gone", replicas=2))
    models.wait_available("gone")
    assert set(models.children("gone")) >= {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}
    models.delete("gone")
    wait_for(lambda: models.children("gone") == {}, 60, "every child garbage-collected")


INVALID = load_yaml(Path(REPO / "tests" / "unit" / "fixtures" / "invalid.yaml"))


def test_invalid_models_are_refused_or_reported_without_children(models: Models) -> None:
    cases = INVALID["cases"]
    assert len(cases) >= 30
    reported: list[tuple[str, str]] = []
    refused: list[tuple[str, str, int, str]] = []
    for index, case in enumerate(cases):
        name = f"bad-{index}"
        spec = merge_patch(INVALID["base"], case["patch"])
        body = {
            "apiVersion": "serving.infergate.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": name},
        }
        body["spec"] = spec
        try:
            models.create(body)
        except ApiException as error:
            refused.append((case["name"], case["field"], error.status, str(error.body)))
            continue
        reported.append((name, case["field"]))
    for case_name, field, status, message in refused:
        assert status in (400, 422), (case_name, message)
        assert field.split("[")[0].removeprefix("spec.") in message, (case_name, message)
    assert reported, "some cases must pass the API server and be caught by the operator"
    for name, field in reported:
        obj = models.wait_condition(name, "Degraded", "True", "InvalidSpec", timeout_s=30)
        condition = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
        assert field in condition["message"], (name, condition["message"])
        assert obj["status"]["phase"] in ("Failed", "Degraded")
    for index in range(len(cases)):
        assert models.children(f"bad-{index}") == {}, f"bad-{index} left children behind"


def test_scheduling_problems_surface_in_status(models: Models) -> None:
    models.create(minimal("nowhere", hardware={"gpu": {"count": 1, "product": "NVIDIA-B200"}}))
    obj = models.wait_condition("nowhere", "Degraded", "True", "Unschedulable", timeout_s=30)
    assert "node" in obj["status"]["message"]
    models.create(minimal("toomany", hardware={"gpu": {"count": 16}}))
    obj = models.wait_condition("toomany", "Degraded", "True", "Unschedulable", timeout_s=30)
    assert "nvidia.com/gpu" in obj["status"]["message"]


def test_scale_to_zero_without_keda_is_degraded_and_applies_nothing(models: Models) -> None:
    """This plane has no KEDA: a model that may scale to zero says so instead of half-applying."""
    models.create(minimal("sleepy", autoscaling={"minReplicas": 0, "maxReplicas": 2}))
    obj = models.wait_condition("sleepy", "Degraded", "True", "AutoscalerNotInstalled", timeout_s=30)
    assert "spec.autoscaling.minReplicas" in obj["status"]["message"]
    assert "keda.sh/v1alpha1" in obj["status"]["message"]
    assert obj["status"]["phase"] == "Degraded"
    assert models.children("sleepy") == {}


def test_autoscaling_on_and_off_keeps_capacity_and_never_fights(models: Models) -> None:
    """On: the HPA takes replicas over from the operator with no reset to 1 in between (the field would
    be dropped and defaulted were the operator its only owner). Off: the operator takes them back from
    the HPA controller's last write, with no FieldConflict (kwok: the HPA enforces minReplicas without
    metrics)."""

    def replicas() -> int:
        try:
            spec = models.apps.read_namespaced_deployment("scaled", models.namespace).spec
        except ApiException as error:
            if error.status == 404:
                return -1
            raise
        return int(spec.replicas)

    def hpa_exists() -> bool:
        return bool(models.children("scaled").get("HorizontalPodAutoscaler"))

    models.create(minimal("scaled", replicas=3))
    wait_for(lambda: replicas() == 3, 30, "3 replicas")
    models.patch("scaled", {"spec": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}})
    wait_for(hpa_exists, 30, "the HPA")
    seen = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seen.add(replicas())
        time.sleep(0.2)
    assert seen == {3}, f"replicas moved while the HPA took over: {sorted(seen)}"

    models.patch("scaled", {"spec": {"autoscaling": {"minReplicas": 4, "maxReplicas": 5}}})
    wait_for(lambda: replicas() == 4, 60, "the HPA scales to its minimum, 4")
    models.patch("scaled", {"spec": {"autoscaling": None, "replicas": 4}})
    wait_for(lambda: not hpa_exists(), 30, "the HPA deleted")
    obj = models.wait_condition("scaled", "Degraded", "False", timeout_s=30)
    assert replicas() == 4
    models.patch("scaled", {"spec": {"replicas": 2}})
    wait_for(lambda: replicas() == 2, 30, "the operator owns replicas again")
    obj = models.wait_condition("scaled", "Degraded", "False", timeout_s=30)
    assert "FieldConflict" not in str(obj["status"])


def test_operator_metrics_count_reconciles(operator: OperatorProcess, models: Models) -> None:
    models.create(minimal("counted"))
    models.wait_available("counted")
    text = operator.metrics()
    assert 'infergate_operator_reconciles_total{kind="spec",result="ok"}' in text
    assert "infergate_operator_reconcile_duration_seconds_bucket" in text


# Children a plan usually does not want, and that nothing but the operator deletes one by one.
OPTIONAL_CHILDREN = ("horizontalpodautoscalers", "rollouts", "analysistemplates", "networkpolicies")


def _deletes_answered_404(plane: ControlPlane) -> float:
    """DELETEs of optional children that the API server answered 404 (its own request counter)."""
    total = 0.0
    for line in plane.kubectl("get", "--raw", "/metrics").splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'verb="DELETE"' in line
            and 'code="404"' in line
            and any(f'resource="{r}"' in line for r in OPTIONAL_CHILDREN)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_converge_deletes_only_children_that_exist(crds: ControlPlane, models: Models) -> None:
    names = [f"nodel{i}" for i in range(3)]
    before = _deletes_answered_404(crds)
    for name in names:
        models.create(minimal(name, replicas=1))
    for name in names:
        models.wait_available(name)
    for name in names:  # a spec change converges again: still nothing unwanted to delete
        models.patch(name, {"spec": {"replicas": 2}})
    for name in names:
        wait_for(
            lambda n=name: models.apps.read_namespaced_deployment(n, models.namespace).spec.replicas == 2,
            30,
            f"{name} scaled to 2",
        )
    time.sleep(2)  # the last converges' requests
    assert _deletes_answered_404(crds) == before, "the operator deleted children that were never there"
