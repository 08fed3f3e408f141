"""The Helm chart without a cluster: lint, schema, CRDs in sync, and what every render must hold."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from infergate_operator import crd
from infergate_operator.settings import OperatorSettings

from tests.packaging import dashboard
from tests.packaging.render import (
    CHART,
    CHART_CASES,
    DIGEST,
    REPO,
    Doc,
    Tools,
    docs,
    find,
    helm_template,
    one,
    run,
)

CASES = [pytest.param(values, monitoring, id=label) for label, values, monitoring in CHART_CASES]
REQUIRED_RULES: dict[tuple[str, str], set[str]] = {
    ("serving.infergate.io", "inferencemodels"): {"get", "list", "watch", "patch", "update"},
    ("serving.infergate.io", "inferencemodels/status"): {"get", "patch", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("autoscaling", "horizontalpodautoscalers"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",
    },
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/eviction"): {"create"},
    ("apps", "replicasets"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("argoproj.io", "rollouts"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("argoproj.io", "analysistemplates"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("monitoring.coreos.com", "servicemonitors"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",
    },
    ("keda.sh", "scaledobjects"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("http.keda.sh", "httpscaledobjects"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("monitoring.coreos.com", "prometheusrules"): {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "update",
        "delete",
    },
}


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def operator_container(documents: list[Doc]) -> dict[str, Any]:
    deployment = one(documents, "Deployment")
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "operator")


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_helm_lint_strict_is_clean(bins: Tools) -> None:
    out = run([bins.helm, "lint", "--strict", CHART])
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_helm_lint_strict_is_clean_in_namespaced_mode(bins: Tools) -> None:
    out = run([bins.helm, "lint", "--strict", CHART, "--set", "watchNamespaces={a,b}"])
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    "bad",
    [
        {"image": {"digest": "sha256:abc"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"gpu": {"resourceName": "nvidia.com/gpu", "typo": 1}},
        {"operator": {"extraEnv": [{"name": "PATH", "value": "/x"}]}},
        {"metrics": {"prometheusRule": {"errorRatio": 2}}},
        {"unknownTopLevel": True},
    ],
)
def test_schema_refuses_bad_values(bins: Tools, bad: dict[str, Any]) -> None:
    out = helm_template(bad, check=False)
    assert out.startswith("ERROR:"), f"accepted {bad}"
    assert "values don't meet the specifications of the schema" in out


def test_every_values_key_is_in_the_schema() -> None:
    """The schema forbids unknown keys, so it must know every key values.yaml has."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], sch: dict[str, Any], path: str) -> None:
        if "$ref" in sch:
            sch = schema["definitions"][sch["$ref"].rsplit("/", 1)[1]]
        props = sch.get("properties")
        if props is None:
            return
        for key, value in node.items():
            assert key in props, f"{path}{key} is missing from values.schema.json"
            if isinstance(value, dict):
                walk(value, props[key], f"{path}{key}.")

    walk(values, schema, "")


def test_chart_crds_match_the_generated_crds() -> None:
    """crds/ is rendered from spec.py; the chart carries the same bytes (crd.py writes both)."""
    generated = (REPO / "crds" / crd.FILENAME).read_text()
    assert (CHART / "crds" / crd.FILENAME).read_text() == generated
    assert crd.drift(crd.render_yaml()) == [], "run `make crd`: crds/ or the chart copy drifted"


def test_chart_carries_kopf_peering_crds() -> None:
    peering = docs((CHART / "crds" / "kopf.dev_peerings.yaml").read_text())
    names = {(d["spec"]["names"]["kind"], d["spec"]["scope"]) for d in peering}
    assert names == {("ClusterKopfPeering", "Cluster"), ("KopfPeering", "Namespaced")}
    assert all(d["spec"]["group"] == "kopf.dev" for d in peering)
    assert all(v["name"] == "v1" for d in peering for v in d["spec"]["versions"])


@pytest.mark.parametrize(("values", "monitoring"), CASES)
def test_render_is_deterministic(values: dict[str, Any], monitoring: bool) -> None:
    assert helm_template(values, monitoring=monitoring) == helm_template(values, monitoring=monitoring)


@pytest.mark.parametrize(("values", "monitoring"), CASES)
def test_operator_pod_is_locked_down(values: dict[str, Any], monitoring: bool) -> None:
    documents = docs(helm_template(values, monitoring=monitoring))
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = operator_container(documents)
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsUser"] >= 10000
    for key in ("requests", "limits"):
        assert set(container["resources"][key]) == {"cpu", "memory"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8081, "metrics": 8082}
    sources = next(v for v in pod["volumes"] if v["name"] == "api-token")["projected"]["sources"]
    assert any("serviceAccountToken" in s for s in sources)


@pytest.mark.parametrize(("values", "monitoring"), CASES)
def test_rbac_has_no_wildcards(values: dict[str, Any], monitoring: bool) -> None:
    documents = docs(helm_template(values, monitoring=monitoring))
    for kind in ("ClusterRole", "Role"):
        for role in find(documents, kind):
            for rule in role["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), f"{kind} {role['metadata']['name']}: {rule}"
                assert "secrets" not in rule.get("resources", [])


def test_cluster_mode_grants_the_operators_job_cluster_wide() -> None:
    documents = docs(helm_template())
    assert not find(documents, "Role")
    role = one(documents, "ClusterRole", "infergate")
    granted = grants(role["rules"])
    for key, verbs in REQUIRED_RULES.items():
        assert verbs <= granted.get(key, set()), f"{key}: {granted.get(key)} lacks {verbs}"
    assert {"list", "watch"} <= granted[("", "namespaces")]
    assert {"get", "list", "watch", "patch"} <= granted[("kopf.dev", "clusterkopfpeerings")]
    crds = grants(one(documents, "ClusterRole", "infergate-crds")["rules"])
    assert crds == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
        ("", "nodes"): {"list", "watch"},
    }
    peering = one(documents, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "infergate"
    assert env_of(operator_container(documents))["INFERGATE_NAMESPACES"] == ""


def test_namespaced_mode_uses_one_role_per_namespace_and_no_cluster_grants() -> None:
    watched = ["infergate-models", "team-b"]
    documents = docs(helm_template({"watchNamespaces": watched}))
    cluster_roles = find(documents, "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["infergate-crds"]
    roles = find(documents, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == watched
    for role in roles:
        granted = grants(role["rules"])
        for key, verbs in REQUIRED_RULES.items():
            assert verbs <= granted.get(key, set())
        assert ("", "namespaces") not in granted
        assert {"get", "list", "watch", "patch"} <= granted[("kopf.dev", "kopfpeerings")]
    bindings = find(documents, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == watched
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "infergate", "namespace": "infergate-system"}
        ]
    assert sorted(p["metadata"]["namespace"] for p in find(documents, "KopfPeering")) == watched
    assert not find(documents, "ClusterKopfPeering")
    assert env_of(operator_container(documents))["INFERGATE_NAMESPACES"] == ",".join(watched)


def test_images_pin_by_digest_when_given() -> None:
    documents = docs(helm_template({"image": {"digest": DIGEST}, "serverImage": {"digest": DIGEST}}))
    container = operator_container(documents)
    assert container["image"] == f"ghcr.io/infergate/infergate-operator@{DIGEST}"
    assert env_of(container)["INFERGATE_SERVER_IMAGE"] == f"ghcr.io/infergate/infergate-server@{DIGEST}"
    default = operator_container(docs(helm_template()))
    assert default["image"] == "ghcr.io/infergate/infergate-operator:0.1.0"


def test_operator_env_is_understood_by_the_operator_settings() -> None:
    """Every INFERGATE_* the chart sets is a field of OperatorSettings, and the values parse."""
    values = {
        "watchNamespaces": ["a", "b"],
        "gpu": {"resourceName": "amd.com/gpu"},
        "prometheus": {"address": "http://prom.example:9090"},
    }
    env = env_of(operator_container(docs(helm_template(values))))
    fields = {f"INFERGATE_{name.upper()}" for name in OperatorSettings.model_fields}
    unknown = sorted(set(env) - fields)
    assert not unknown, f"chart sets settings the operator does not have: {unknown}"
    kwargs = {k.removeprefix("INFERGATE_").lower(): v for k, v in env.items()}
    settings = OperatorSettings.model_validate(kwargs)
    assert settings.namespaces == ("a", "b")
    assert settings.gpu_resource_name == "amd.com/gpu"
    assert settings.prometheus_address == "http://prom.example:9090"


def test_node_taint_is_opt_in_with_its_own_grant_on_nodes() -> None:
    default = docs(helm_template())
    for role in find(default, "ClusterRole"):  # without it, nodes are only watched (status.scheduling)
        assert grants(role["rules"]).get(("", "nodes"), set()) <= {"list", "watch"}, role["metadata"]["name"]
    assert env_of(operator_container(default))["INFERGATE_QUARANTINE_TAINT_NODES"] == "false"
    on = docs(helm_template({"quarantine": {"taintNodes": True, "failedChecks": 2}}))
    nodes = grants(one(on, "ClusterRole", "infergate-nodes")["rules"])
    assert nodes == {("", "nodes"): {"get", "patch"}}
    env = env_of(operator_container(on))
    settings = OperatorSettings(
        quarantine_taint_nodes=env["INFERGATE_QUARANTINE_TAINT_NODES"],
        quarantine_failed_checks=env["INFERGATE_QUARANTINE_FAILED_CHECKS"],
    )
    assert settings.quarantine_taint_nodes
    assert settings.quarantine_failed_checks == 2


def test_monitoring_objects_are_opt_in_and_need_their_crds() -> None:
    assert not find(docs(helm_template()), "ServiceMonitor")
    assert not find(docs(helm_template()), "PrometheusRule")
    on = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
    refused = helm_template(on, check=False)
    assert refused.startswith("ERROR:")
    assert "Prometheus Operator CRDs" in refused
    documents = docs(helm_template(on, monitoring=True))
    monitor = one(documents, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = one(documents, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_prometheus_rule_alerts_on_what_users_expect() -> None:
    on = {"metrics": {"prometheusRule": {"enabled": True, "p95LatencySeconds": 0.75}}}
    rule = one(docs(helm_template(on, monitoring=True)), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == {
        "InferGateInputDrift",
        "InferGateHighP95Latency",
        "InferGateHighErrorRate",
        "InferGateQueueBacklog",
        "InferGateGoldenFailures",
        "InferGateGPUMemoryHigh",
        "InferGateIdleGPUs",
        "InferGateNodeCacheCorruption",
    }
    records = {r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert "* 2.5 / 3600" in records["infergate:cost_per_1k_requests:rate5m"]
    assert "< 0.05" in alerts["InferGateIdleGPUs"]["expr"]
    assert alerts["InferGateIdleGPUs"]["for"] == "1h"
    assert "histogram_quantile(0.95" in alerts["InferGateHighP95Latency"]["expr"]
    assert "> 0.75" in alerts["InferGateHighP95Latency"]["expr"]
    assert 'inference_requests_total{status=~"5.."}' in alerts["InferGateHighErrorRate"]["expr"]
    assert "inference_queue_depth" in alerts["InferGateQueueBacklog"]["expr"]
    assert "golden_checks_total" in alerts["InferGateGoldenFailures"]["expr"]
    assert "DCGM_FI_DEV_FB_USED" in alerts["InferGateGPUMemoryHigh"]["expr"]
    assert "infergate:input_drift_psi:max > 0.2" in alerts["InferGateInputDrift"]["expr"]
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert "{{ $labels." in alert["annotations"]["summary"]


def test_dashboard_configmap_carries_the_checked_in_dashboard() -> None:
    assert (CHART / "dashboards" / "infergate.json").read_text() == dashboard.render_text(), (
        "run `python -m tests.packaging.dashboard`"
    )
    cm = one(docs(helm_template()), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(cm["data"]["infergate.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for needle in (
        "histogram_quantile(0.50",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "inference_latency_seconds_bucket",
        "inference_requests_total",
        'status=~"5.."',
        "inference_queue_depth",
        "golden_checks_total",
        "inference_model_ready",
    ):
        assert needle in exprs, needle
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert not find(docs(helm_template({"dashboards": {"enabled": False}})), "ConfigMap")


def test_signed_models_policy_is_the_built_one_and_the_switch_widens_its_binding() -> None:
    from infergate_operator import admission

    rendered = docs(helm_template())
    assert one(rendered, "ValidatingAdmissionPolicy") == admission.build_policy()
    assert one(rendered, "ValidatingAdmissionPolicyBinding") == admission.build_binding()
    everywhere = docs(helm_template({"signedModels": {"enforce": "all"}}))
    assert one(everywhere, "ValidatingAdmissionPolicyBinding") == admission.build_binding(
        every_namespace=True
    )
    off = docs(helm_template({"signedModels": {"policy": False}}))
    assert not find(off, "ValidatingAdmissionPolicy")
    assert not find(off, "ValidatingAdmissionPolicyBinding")


NODE_CACHE = {"models": {"nodeCache": "hostPath:/var/lib/infergate/models"}}


def sweep_pod(documents: list[Doc]) -> dict[str, Any]:
    pod: dict[str, Any] = one(documents, "DaemonSet", "infergate-cache-sweep")["spec"]["template"]["spec"]
    return pod


def test_a_hostpath_node_cache_gets_a_sweep_on_every_node_that_runs_models() -> None:
    documents = docs(helm_template({**NODE_CACHE, "serverImage": {"digest": DIGEST}}))
    pod = sweep_pod(documents)
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/infergate/infergate-server@{DIGEST}"
    assert container["args"][:2] == ["cache", "sweep"]
    cache = next(v for v in pod["volumes"] if v["name"] == "node-cache")
    assert cache["hostPath"] == {"path": "/var/lib/infergate/models", "type": "Directory"}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "node-cache")
    assert "--root=" + mount["mountPath"] in container["args"]
    assert not mount.get("readOnly")  # it evicts corrupted entries
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    downward = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert downward == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_UID": "metadata.uid",
        "NODE_NAME": "spec.nodeName",
    }
    # The same uid as the model pods (it owns what they wrote), locked down like the operator.
    assert pod["securityContext"]["runAsUser"] == 65532
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8083}
    assert f"--metrics-port={ports['metrics']}" in container["args"]


def test_the_sweep_may_only_create_events_in_its_namespace() -> None:
    documents = docs(helm_template(NODE_CACHE))
    sa = sweep_pod(documents)["serviceAccountName"]
    binding = one(documents, "RoleBinding", "infergate-cache-sweep")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "infergate-system"}]
    role = one(documents, "Role", binding["roleRef"]["name"])
    assert grants(role["rules"]) == {("", "events"): {"create"}}
    assert all(sa not in str(b["subjects"]) for b in find(documents, "ClusterRoleBinding"))


def test_the_sweeps_arguments_are_understood_by_the_server() -> None:
    from infergate_server.cli import _parser

    values = {
        "models": {**NODE_CACHE["models"], "nodeCacheSweep": {"intervalSeconds": 900, "metricsPort": 9100}}
    }
    (container,) = sweep_pod(docs(helm_template(values)))["containers"]
    args = _parser().parse_args(container["args"])
    assert (args.command, args.cache_command) == ("cache", "sweep")
    assert (args.interval_seconds, args.metrics_port) == (900.0, 9100)
    assert str(args.root) == "/var/cache/infergate"
    assert args.metrics_address == "0.0.0.0"
    assert not args.once


@pytest.mark.parametrize("node_cache", ["", "pvc:model-cache"])
def test_no_sweep_without_a_hostpath_node_cache(node_cache: str) -> None:
    documents = docs(helm_template({"models": {"nodeCache": node_cache}}))
    assert not find(documents, "DaemonSet")
    assert not find(documents, "Role", "infergate-cache-sweep")


def test_the_sweep_is_scraped_with_the_operator_when_monitoring_is_on() -> None:
    on = {**NODE_CACHE, "metrics": {"serviceMonitor": {"enabled": True}}}
    documents = docs(helm_template(on, monitoring=True))
    monitor = one(documents, "ServiceMonitor", "infergate-cache-sweep")
    service = one(documents, "Service", "infergate-cache-sweep")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    labels = one(documents, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    operator = one(documents, "Service", "infergate-metrics")
    assert not operator["spec"]["selector"].items() <= labels.items()  # the operator's selects no sweep pod
    assert not find(docs(helm_template(NODE_CACHE)), "ServiceMonitor")


def test_the_sweep_can_run_in_a_namespace_that_admits_hostpath() -> None:
    values = {"models": {**NODE_CACHE["models"], "nodeCacheSweep": {"namespace": "node-agents"}}}
    documents = docs(helm_template(values))
    sweep = [d for d in documents if d["metadata"]["name"] == "infergate-cache-sweep"]
    assert {d["kind"] for d in sweep} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "DaemonSet",
        "NetworkPolicy",
    }
    assert {d["metadata"]["namespace"] for d in sweep} == {"node-agents"}
    assert one(documents, "RoleBinding", "infergate-cache-sweep")["subjects"][0]["namespace"] == "node-agents"
    assert one(documents, "Deployment")["metadata"]["namespace"] == "infergate-system"


def test_schema_refuses_a_too_short_sweep_interval(bins: Tools) -> None:
    out = helm_template({"models": {"nodeCacheSweep": {"intervalSeconds": 1}}}, check=False)
    assert out.startswith("ERROR:")
    assert "intervalSeconds" in out
