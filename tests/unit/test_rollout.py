"""Strategy Canary builders: Rollout, AnalysisTemplate `<name>-gates`, canary/stable Services."""

from __future__ import annotations

from typing import Any

from infergate_operator.builders import desired_children
from infergate_operator.builders.analysis import latency_query
from infergate_operator.builders.deployment import build_deployment
from infergate_operator.builders.rollout import ROLLOUT_HASH_LABEL
from infergate_operator.context import ANNOTATION_REVISION, make_context
from infergate_operator.settings import OperatorSettings

from tests.unit.igm import ModelWrapper, make_model


def canary(model: ModelWrapper, **canary: Any) -> ModelWrapper:
    return model.patch({"rollout": {"strategy": "Canary", "canary": canary}})


def children(model: ModelWrapper, settings: OperatorSettings | None = None) -> dict[str, dict[str, Any]]:
    plan = desired_children(model.spec(), model.ctx(settings))
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in plan.apply}


def test_canary_plan_has_rollout_gates_and_argo_services_in_apply_order() -> None:
    model = canary(make_model("sent", "team-a"), steps=[{"setWeight": 20}, {"analysis": {}}])
    plan = desired_children(model.spec(), model.ctx())
    assert [f"{o['kind']}/{o['metadata']['name']}" for o in plan.apply] == [
        "ConfigMap/sent-config",
        "Service/sent",
        "Service/sent-canary",
        "Service/sent-stable",
        "Service/sent-golden",
        "AnalysisTemplate/sent-gates",
        "AnalysisTemplate/sent-golden",
        "Rollout/sent",
    ]
    assert any(ref.kind == "Deployment" for ref in plan.delete)
    assert all(o["metadata"]["ownerReferences"][0]["kind"] == "InferenceModel" for o in plan.apply)


def test_rollout_reuses_the_deployment_pod_template() -> None:
    model = canary(make_model().gpus(1).replicas(3))
    rollout = children(model)["Rollout/m"]
    deployment = build_deployment(model.spec(), model.ctx())
    ours, theirs = rollout["spec"]["template"], deployment["spec"]["template"]
    assert ours["spec"]["containers"] == theirs["spec"]["containers"]
    assert ours["spec"]["initContainers"] == theirs["spec"]["initContainers"]
    assert ours["spec"]["tolerations"] == theirs["spec"]["tolerations"]
    assert ours["spec"]["topologySpreadConstraints"][0]["matchLabelKeys"] == [ROLLOUT_HASH_LABEL]
    assert rollout["spec"]["replicas"] == 3
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]


def test_rollout_revision_is_stamped_on_its_template_and_reported_by_the_plan() -> None:
    model = canary(make_model())
    plan = desired_children(model.spec(), model.ctx())
    rollout = next(o for o in plan.apply if o["kind"] == "Rollout")
    assert rollout["spec"]["template"]["metadata"]["annotations"][ANNOTATION_REVISION] == plan.revision
    changed = canary(make_model().image("registry.example/server:2"))
    assert desired_children(changed.spec(), changed.ctx()).revision != plan.revision


def test_steps_translate_and_an_analysis_step_is_always_present() -> None:
    model = canary(make_model(), steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"pause": {}}])
    steps = children(model)["Rollout/m"]["spec"]["strategy"]["canary"]["steps"]
    assert steps[:3] == [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"pause": {}}]
    assert steps[3]["analysis"]["templates"] == [{"templateName": "m-gates"}]
    assert steps[3]["analysis"]["args"][0]["valueFrom"] == {"podTemplateHashValue": "Latest"}


def test_default_steps_gate_twice() -> None:
    steps = children(canary(make_model()))["Rollout/m"]["spec"]["strategy"]["canary"]["steps"]
    assert [next(iter(s)) for s in steps] == ["setWeight", "analysis", "setWeight", "pause", "analysis"]


def test_capacity_first_and_abort_on_stuck_canary() -> None:
    spec = children(canary(make_model()))["Rollout/m"]["spec"]
    assert spec["strategy"]["canary"]["maxUnavailable"] == 0
    assert spec["strategy"]["canary"]["canaryService"] == "m-canary"
    assert spec["strategy"]["canary"]["stableService"] == "m-stable"
    assert spec["progressDeadlineAbort"] is True


def test_argo_services_leave_the_selector_to_argo() -> None:
    built = children(canary(make_model()))
    assert "selector" not in built["Service/m-canary"]["spec"]
    assert "selector" not in built["Service/m-stable"]["spec"]
    assert built["Service/m"]["spec"]["selector"]


def test_golden_service_selects_the_newest_revision_ready_or_not() -> None:
    # Argo points <name>-canary at the canary only once a canary pod is available: a canary that golden
    # keeps unready is read through <name>-golden, whose selector is the operator's.
    model = canary(make_model("m", "ns"))
    meta, spec = model.obj()["metadata"], model.spec()
    plan = desired_children(spec, make_context(meta, spec, OperatorSettings(), candidate_hash="abc123"))
    built = {f"{o['kind']}/{o['metadata']['name']}": o for o in plan.apply}
    golden = built["Service/m-golden"]["spec"]
    assert golden["publishNotReadyAddresses"] is True
    assert golden["selector"] == {**model.ctx().selector_labels, "rollouts-pod-template-hash": "abc123"}
    # No hash known yet (a first revision, which runs no analysis): every pod of the model.
    assert children(model)["Service/m-golden"]["spec"]["selector"] == model.ctx().selector_labels
    for name in ("Service/m-canary", "Service/m-stable", "Service/m"):
        assert "publishNotReadyAddresses" not in built[name]["spec"], name
    assert "selector" not in built["Service/m-canary"]["spec"]  # Argo's


def test_background_golden_analysis_runs_from_the_first_step_until_promotion() -> None:
    built = children(canary(make_model()))
    background = built["Rollout/m"]["spec"]["strategy"]["canary"]["analysis"]
    assert background == {"templates": [{"templateName": "m-golden"}]}
    (metric,) = built["AnalysisTemplate/m-golden"]["spec"]["metrics"]
    assert metric["name"] == "golden"
    assert metric["failureLimit"] == 0
    assert "count" not in metric
    assert metric["consecutiveErrorLimit"] >= 1000


def test_autoscaling_leaves_rollout_replicas_to_the_hpa() -> None:
    built = children(canary(make_model().autoscaling(1, 4)))
    assert "replicas" not in built["Rollout/m"]["spec"]
    assert built["HorizontalPodAutoscaler/m"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_traffic_routing_nginx_and_gateway_api_plugin() -> None:
    nginx = canary(make_model(), trafficRouting={"nginx": {"stableIngress": "m-ingress"}})
    routing = children(nginx)["Rollout/m"]["spec"]["strategy"]["canary"]["trafficRouting"]
    assert routing == {"nginx": {"stableIngress": "m-ingress"}}
    gateway = canary(make_model("m", "ns1"), trafficRouting={"gatewayAPI": {"httpRoute": "m-route"}})
    routing = children(gateway)["Rollout/m"]["spec"]["strategy"]["canary"]["trafficRouting"]
    assert routing == {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "m-route", "namespace": "ns1"}}}
    plain = children(canary(make_model()))["Rollout/m"]["spec"]["strategy"]["canary"]
    assert "trafficRouting" not in plain


def test_gates_golden_web_metric_uses_the_settings_template() -> None:
    settings = OperatorSettings(
        golden_url_template="http://{service}.{namespace}:{port}/v2/models/{model}/golden"
    )
    model = canary(make_model("sent", "team-a"))
    template = children(model, settings)["AnalysisTemplate/sent-gates"]
    golden = template["spec"]["metrics"][0]
    assert golden["name"] == "golden"
    assert golden["provider"]["web"]["url"] == "http://sent-golden.team-a:8080/v2/models/sent/golden"
    assert golden["successCondition"] == "result.failed == 0"
    assert golden["failureLimit"] == 0
    assert [m["name"] for m in template["spec"]["metrics"]] == ["golden"]


def test_golden_web_metric_can_use_the_golden_service_ip() -> None:
    settings = OperatorSettings(golden_url_template="http://{service_ip}:{port}/v2/models/{model}/golden")
    model = canary(make_model("sent", "team-a"))
    meta, spec = model.obj()["metadata"], model.spec()

    def url(ip: str | None) -> str:
        plan = desired_children(spec, make_context(meta, spec, settings, golden_service_ip=ip))
        (template,) = (o for o in plan.apply if o["metadata"]["name"] == "sent-gates")
        return str(template["spec"]["metrics"][0]["provider"]["web"]["url"])

    assert url("10.96.3.4") == "http://10.96.3.4:8080/v2/models/sent/golden"
    # Not known yet (the Service's first apply): its name, until the next reconcile reads the IP.
    assert url(None) == "http://sent-golden.team-a.svc:8080/v2/models/sent/golden"


def test_gates_prometheus_metrics_follow_the_spec_thresholds() -> None:
    settings = OperatorSettings(prometheus_address="http://prom:9090")
    analysis = {"maxP95LatencySeconds": 1.5, "maxErrorRate": 0.01, "interval": "30s", "failureLimit": 1,
                "count": 4, "window": "2m"}  # fmt: skip
    template = children(canary(make_model("sent", "team-a"), analysis=analysis), settings)
    metrics = {m["name"]: m for m in template["AnalysisTemplate/sent-gates"]["spec"]["metrics"]}
    latency, errors = metrics["p95-latency"], metrics["error-rate"]
    assert latency["successCondition"] == "isNaN(result) || result <= 1.5"
    assert errors["successCondition"] == "isNaN(result) || result <= 0.01"
    assert latency["provider"]["prometheus"]["address"] == "http://prom:9090"
    query = latency["provider"]["prometheus"]["query"]
    assert 'rollouts_pod_template_hash="{{args.canary-hash}}"' in query
    assert 'namespace="team-a",model="sent"' in query
    assert "[2m]" in query
    assert 'status=~"5.."' in errors["provider"]["prometheus"]["query"]
    assert (latency["interval"], latency["count"], latency["failureLimit"]) == ("30s", 4, 1)


def test_latency_query_is_a_scalar_p95() -> None:
    query = latency_query(make_model("x", "y").ctx(), "1m")
    assert query.startswith(
        "scalar(histogram_quantile(0.95, sum by (le) (rate(inference_latency_seconds_bucket{"
    )


def test_user_actions_do_not_change_the_rollout() -> None:
    base = children(canary(make_model()))
    acted = children(canary(make_model(), abort=True, promote="abc", promoteFull="def", retry="2"))
    assert base == acted
