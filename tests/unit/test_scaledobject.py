"""KEDA children: a ScaledObject instead of an HPA, an HTTPScaledObject for scale to zero, no replicas."""

from __future__ import annotations

from typing import Any

import pytest
from infergate_operator.builders import desired_children
from infergate_operator.builders.children import ChildRef, Plan
from infergate_operator.builders.scaledobject import SKIP_SCALED_OBJECT
from infergate_operator.settings import OperatorSettings
from infergate_operator.validation import check_spec

from tests.unit.igm import ModelWrapper, make_model

SETTINGS = OperatorSettings(
    prometheus_address="http://127.0.0.1:9091", keda_http_scaler_address="127.0.0.1:9092"
)


def plan_of(model: ModelWrapper, keda: bool = False) -> Plan:
    return desired_children(model.spec(), model.ctx(SETTINGS, keda=keda))


def child(plan: Plan, kind: str) -> dict[str, Any]:
    return next(obj for obj in plan.apply if obj["kind"] == kind)


def kinds(plan: Plan) -> list[str]:
    return [obj["kind"] for obj in plan.apply]


def to_zero(**extra: Any) -> ModelWrapper:
    return make_model("tiny", "team-a").autoscaling(0, 3, **extra)


def test_min_replicas_zero_renders_a_scaled_object_not_an_hpa() -> None:
    plan = plan_of(to_zero(idleSeconds=90))
    assert kinds(plan) == ["ConfigMap", "Service", "Deployment", "HTTPScaledObject", "ScaledObject"]
    assert ChildRef("autoscaling/v2", "HorizontalPodAutoscaler", "tiny") in plan.delete
    spec = child(plan, "ScaledObject")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tiny"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 3, 90)


def test_the_workload_carries_no_replicas_while_keda_owns_scale() -> None:
    for plan in (plan_of(to_zero()), plan_of(make_model().autoscaling(2, 5), keda=True)):
        assert "replicas" not in child(plan, "Deployment")["spec"]


def test_canary_scaled_object_targets_the_rollout() -> None:
    plan = plan_of(to_zero().patch({"rollout": {"strategy": "Canary"}}))
    assert child(plan, "ScaledObject")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    assert child(plan, "HTTPScaledObject")["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    assert "replicas" not in child(plan, "Rollout")["spec"]


def test_triggers_queue_depth_from_prometheus_cpu_and_held_requests() -> None:
    spec = child(plan_of(to_zero(targetQueueDepth=4).cpu(2)), "ScaledObject")["spec"]
    by_type = {t["type"]: t for t in spec["triggers"]}
    assert set(by_type) == {"prometheus", "cpu", "external-push"}
    prom = by_type["prometheus"]["metadata"]
    assert prom["serverAddress"] == "http://127.0.0.1:9091"
    assert prom["query"] == 'sum(inference_queue_depth{namespace="team-a",model="tiny"}) or vector(0)'
    assert (prom["threshold"], by_type["prometheus"]["metricType"]) == ("4", "AverageValue")
    assert by_type["cpu"]["metadata"] == {"value": "70"}
    assert by_type["external-push"]["metadata"] == {
        "scalerAddress": "127.0.0.1:9092",
        "httpScaledObject": "tiny",
    }


def test_behavior_is_the_hpas() -> None:
    spec = child(plan_of(to_zero(scaleDownStabilizationSeconds=45)), "ScaledObject")["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 45
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_http_scaled_object_routes_holds_and_leaves_scaling_to_ours() -> None:
    obj = child(plan_of(to_zero(holdTimeoutSeconds=40, idleSeconds=60)), "HTTPScaledObject")
    assert obj["metadata"]["annotations"] == {SKIP_SCALED_OBJECT: "true"}
    spec = obj["spec"]
    assert spec["hosts"] == ["tiny.team-a", "tiny.team-a.svc", "tiny.team-a.svc.cluster.local"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tiny",
        "service": "tiny",
        "port": 8080,
    }
    assert spec["timeouts"] == {"conditionWait": "40s", "responseHeader": "30s"}
    assert spec["scaledownPeriod"] == 60
    assert spec["replicas"] == {"min": 0, "max": 3}


def test_with_keda_installed_min_one_uses_a_scaled_object_without_holding() -> None:
    plan = plan_of(make_model().autoscaling(1, 4), keda=True)
    assert "HorizontalPodAutoscaler" not in kinds(plan)
    assert "HTTPScaledObject" not in kinds(plan)
    spec = child(plan, "ScaledObject")["spec"]
    assert spec["minReplicaCount"] == 1
    assert [t["type"] for t in spec["triggers"]] == ["prometheus"]
    assert ChildRef("http.keda.sh/v1alpha1", "HTTPScaledObject", "m", True) in plan.delete


def test_without_keda_min_one_keeps_the_hpa_and_deletes_no_keda_objects() -> None:
    plan = plan_of(make_model().autoscaling(1, 4))
    assert "HorizontalPodAutoscaler" in kinds(plan)
    assert not [ref for ref in plan.delete if "keda.sh" in ref.api_version]


def test_turning_autoscaling_off_returns_replicas_and_deletes_keda_objects() -> None:
    plan = plan_of(make_model().replicas(2), keda=True)
    assert child(plan, "Deployment")["spec"]["replicas"] == 2
    gone = {ref.kind for ref in plan.delete}
    assert {"ScaledObject", "HTTPScaledObject", "HorizontalPodAutoscaler"} <= gone


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"minReplicas": -1}, "spec.autoscaling.minReplicas"),
        ({"idleSeconds": 5}, "spec.autoscaling.idleSeconds"),
        ({"holdTimeoutSeconds": 0}, "spec.autoscaling.holdTimeoutSeconds"),
        ({"holdTimeoutSeconds": "soon"}, "spec.autoscaling.holdTimeoutSeconds"),
    ],
)
def test_bad_scale_to_zero_fields_are_named(patch: dict[str, Any], field: str) -> None:
    raw = make_model().autoscaling(0, 2, **patch).raw
    result = check_spec(raw, None, "nvidia.com/gpu.product")
    assert result.spec is None
    assert any(field in error for error in result.errors), result.errors


def test_held_too_long_goes_to_the_operators_503_responder() -> None:
    settings = SETTINGS.model_copy(update={"wake_timeout_host": "localhost", "wake_timeout_port": 8093})
    plan = desired_children(to_zero(holdTimeoutSeconds=40).spec(), to_zero().ctx(settings))
    spec = child(plan, "HTTPScaledObject")["spec"]
    failover = {"service": "tiny-waking", "port": 8093, "timeoutSeconds": 40}
    assert spec["coldStartTimeoutFailoverRef"] == failover
    waking = next(o for o in plan.apply if o["metadata"]["name"] == "tiny-waking")
    assert waking["spec"]["type"] == "ExternalName"
    assert waking["spec"]["externalName"] == "localhost"
    assert "coldStartTimeoutFailoverRef" not in child(plan_of(to_zero()), "HTTPScaledObject")["spec"]
    assert ChildRef("v1", "Service", "tiny-waking") in plan_of(make_model("tiny", "team-a")).delete


def test_wake_timeout_answer_is_503_with_retry_after() -> None:
    from infergate_operator.wake_timeout import answer

    status, headers, body = answer("tiny.team-a:8080", 7)
    assert (status, headers["Retry-After"]) == (503, "7")
    assert b"holdTimeoutSeconds" in body
    assert b'"host": "tiny.team-a"' in body
    assert len(answer("x" * 10_000, 1)[2]) < 600


def test_wake_timeout_responder_answers_every_method_over_http() -> None:
    import http.client

    from infergate_operator.wake_timeout import serve

    server = serve("127.0.0.1", 0, 12)
    try:
        port = server.server_address[1]
        for method, body in (("POST", b'{"inputs": []}' * 1000), ("GET", None), ("HEAD", None)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(method, "/v2/models/tiny/infer", body=body, headers={"Host": "tiny.team-a"})
            response = conn.getresponse()
            assert (response.status, response.getheader("Retry-After")) == (503, "12")
            response.read()
            conn.close()
    finally:
        server.shutdown()
        server.server_close()


HPA_CONFLICT = (
    'Apply failed with 1 conflict: conflict with "kube-controller-manager" using apps/v1: .spec.replicas'
)


def test_replicas_are_taken_back_from_an_autoscaler_only() -> None:
    from infergate_operator.apply import conflicting_fields, conflicting_managers, takes_back_replicas

    owned = {"kind": "Deployment", "metadata": {"name": "m"}, "spec": {"replicas": 3}}
    managers = conflicting_managers(HPA_CONFLICT)
    assert conflicting_fields(HPA_CONFLICT) == {".spec.replicas"}
    assert takes_back_replicas(owned, managers, HPA_CONFLICT)
    # Still autoscaled (no replicas of ours): nothing to take.
    assert not takes_back_replicas({**owned, "spec": {}}, managers, HPA_CONFLICT)
    # Another field, or another controller: reported, never forced.
    other_field = HPA_CONFLICT.replace(".spec.replicas", ".spec.template.spec.containers")
    assert not takes_back_replicas(owned, managers, other_field)
    two = (
        'Apply failed with 2 conflicts: conflicts with "kube-controller-manager" using apps/v1:\n'
        "- .spec.replicas\n- .spec.minReadySeconds"
    )
    assert not takes_back_replicas(owned, conflicting_managers(two), two)
    other = HPA_CONFLICT.replace("kube-controller-manager", "flux")
    assert not takes_back_replicas(owned, conflicting_managers(other), other)


def test_only_our_sole_apply_ownership_of_replicas_needs_a_handover() -> None:
    from infergate_operator.apply import owns_replicas

    def entry(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": fields}}

    live = {"metadata": {"managedFields": [entry("infergate", "Apply", {"f:replicas": {}})]}}
    assert owns_replicas(live, "infergate")
    assert not owns_replicas(live, "infergate-handover")
    hpa = {"metadata": {"managedFields": [entry("kube-controller-manager", "Update", {"f:replicas": {}})]}}
    assert not owns_replicas(hpa, "kube-controller-manager")


def test_every_child_the_plans_make_has_a_rest_mapping() -> None:
    from infergate_operator.kube import resource_path

    settings = SETTINGS.model_copy(update={"wake_timeout_host": "localhost"})
    for model in (to_zero(), make_model().autoscaling(1, 3)):
        plan = desired_children(model.spec(), model.ctx(settings, keda=True))
        for obj in plan.apply:
            assert resource_path(obj["apiVersion"], obj["kind"], "ns", obj["metadata"]["name"])
        for ref in plan.delete:
            assert resource_path(ref.api_version, ref.kind, "ns", ref.name)
