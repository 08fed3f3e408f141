"""Pure builders: each child's shape, what is wanted when, and determinism."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from infergate_operator.builders import desired_children
from infergate_operator.builders.children import ChildRef, Plan
from infergate_operator.builders.configmap import artifact_basename, build_configmap
from infergate_operator.builders.deployment import build_pod_template
from infergate_operator.context import ANNOTATION_CONFIG_HASH, ANNOTATION_SPEC_HASH, BuildContext
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import GoldenCase

from tests.unit.igm import UID, ModelWrapper, make_model


def plan_of(model: ModelWrapper, settings: OperatorSettings | None = None) -> Plan:
    return desired_children(model.spec(), model.ctx(settings))


def kinds(plan: Plan) -> list[str]:
    return [obj["kind"] for obj in plan.apply]


def child(plan: Plan, kind: str) -> dict[str, Any]:
    return next(obj for obj in plan.apply if obj["kind"] == kind)


def pod_spec(model: ModelWrapper) -> dict[str, Any]:
    spec: dict[str, Any] = child(plan_of(model), "Deployment")["spec"]["template"]["spec"]
    return spec


def server(model: ModelWrapper) -> dict[str, Any]:
    container: dict[str, Any] = pod_spec(model)["containers"][0]
    return container


@pytest.mark.parametrize(
    ("model", "present", "deleted"),
    [
        (
            make_model(),
            ["ConfigMap", "Service", "Deployment"],
            ["HorizontalPodAutoscaler", "PodDisruptionBudget"],
        ),
        (
            make_model().replicas(3),
            ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget"],
            ["Rollout"],
        ),
        (
            make_model().autoscaling(1, 4),
            ["ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler"],
            [],
        ),
        (
            make_model().autoscaling(2, 4),
            ["ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"],
            ["AnalysisTemplate"],
        ),
    ],
)
def test_children_wanted_and_unwanted_in_stable_order(
    model: ModelWrapper, present: list[str], deleted: list[str]
) -> None:
    plan = plan_of(model)
    assert kinds(plan) == present
    deleted_kinds = {ref.kind for ref in plan.delete}
    assert set(deleted) <= deleted_kinds
    assert not deleted_kinds & {"ConfigMap", "Deployment"}
    assert {ChildRef.of(obj) for obj in plan.apply}.isdisjoint(plan.delete)


def test_argo_children_marked_optional_crd() -> None:
    plan = plan_of(make_model())
    assert {ref.kind for ref in plan.delete if ref.optional_crd} == {"Rollout", "AnalysisTemplate"}


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    for obj in plan_of(make_model("sent", "team-a").replicas(2).autoscaling(2, 3)).apply:
        meta = obj["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "serving.infergate.io/v1alpha1",
                "kind": "InferenceModel",
                "name": "sent",
                "uid": UID,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "infergate"
        assert meta["labels"]["app.kubernetes.io/instance"] == "sent"
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in plan_of(make_model("sent")).apply}
    assert names == {("ConfigMap", "sent-config"), ("Service", "sent"), ("Deployment", "sent")}


def test_builds_are_deterministic() -> None:
    model = make_model().gpus(2).autoscaling(2, 5).golden_tensor()
    assert plan_of(model) == plan_of(model)
    assert yaml.safe_dump(list(plan_of(model).apply)) == yaml.safe_dump(list(plan_of(model).apply))


def test_gpu_limit_node_selector_and_taint_toleration() -> None:
    pod = pod_spec(make_model().gpus(2, "NVIDIA-H100-80GB-HBM3"))
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


def test_gpu_resource_name_and_taint_come_from_settings() -> None:
    settings = OperatorSettings(
        gpu_resource_name="amd.com/gpu", gpu_taint_key="amd.com/gpu", gpu_taint_value="y"
    )
    pod = child(plan_of(make_model().gpus(1, None), settings), "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"amd.com/gpu": "1"}
    assert "nodeSelector" not in pod
    assert pod["tolerations"][0]["key"] == "amd.com/gpu"


def test_cpu_only_model_has_no_gpu_anything() -> None:
    pod = pod_spec(make_model().cpu(2).memory("4Gi"))
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert "tolerations" not in pod
    assert "nodeSelector" not in pod


def test_user_node_selector_and_tolerations_are_merged() -> None:
    model = (
        make_model()
        .gpus(1)
        .patch(
            {
                "scheduling": {
                    "nodeSelector": {"pool": "inference"},
                    "tolerations": [{"key": "spot", "operator": "Exists"}],
                }
            }
        )
    )
    pod = pod_spec(model)
    assert pod["nodeSelector"] == {"pool": "inference", "nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "spot"]


@pytest.mark.parametrize(
    ("across", "topology_key"),
    [("zone", "topology.kubernetes.io/zone"), ("node", "kubernetes.io/hostname"), ("none", None)],
)
def test_topology_spread_and_anti_affinity(across: str, topology_key: str | None) -> None:
    pod = pod_spec(make_model().spread(across))
    if topology_key is None:
        assert "topologySpreadConstraints" not in pod
        assert "affinity" not in pod
        return
    (constraint,) = pod["topologySpreadConstraints"]
    assert constraint["topologyKey"] == topology_key
    assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_pod_template_hash_label_is_a_parameter_for_rollouts() -> None:
    model = make_model()
    template = build_pod_template(model.spec(), model.ctx(), hash_label="rollouts-pod-template-hash")
    assert template["spec"]["topologySpreadConstraints"][0]["matchLabelKeys"] == [
        "rollouts-pod-template-hash"
    ]


def test_restricted_pod_security_on_every_container() -> None:
    pod = pod_spec(make_model().gpus(1).llm())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
    assert {v["name"] for v in pod["volumes"]} >= {"tmp", "models", "config"}
    assert all("hostPath" not in v for v in pod["volumes"])


def test_fetch_init_container_and_probes() -> None:
    pod = pod_spec(make_model())
    (fetch,) = pod["initContainers"]
    assert fetch["command"][:2] == ["infergate-server", "fetch"]
    assert {"name": "models", "mountPath": "/models", "readOnly": False} in fetch["volumeMounts"]
    main = pod["containers"][0]
    assert main["command"][:2] == ["infergate-server", "serve"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in main["volumeMounts"]
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    startup = main["startupProbe"]
    assert (
        startup["periodSeconds"] * startup["failureThreshold"] >= OperatorSettings().startup_timeout_seconds
    )


def test_startup_probe_follows_settings() -> None:
    settings = OperatorSettings(startup_timeout_seconds=300)
    main = child(plan_of(make_model(), settings), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"] == 300


def test_deployment_strategy_never_drops_capacity() -> None:
    deployment = child(plan_of(make_model().replicas(3)), "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_replicas_left_out_when_the_hpa_owns_scale() -> None:
    plan = plan_of(make_model().replicas(3).autoscaling(1, 6))
    assert "replicas" not in child(plan, "Deployment")["spec"]
    assert child(plan, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "m",
    }


def test_hpa_metrics_and_behavior() -> None:
    hpa = child(
        plan_of(make_model().cpu(2).autoscaling(2, 8, scaleDownStabilizationSeconds=120)),
        "HorizontalPodAutoscaler",
    )
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 8)
    by_type = {m["type"]: m for m in spec["metrics"]}
    assert by_type["Resource"]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert by_type["Pods"]["pods"]["metric"]["name"] == "inference_queue_depth"
    assert by_type["Pods"]["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120


def test_hpa_without_cpu_request_scales_on_queue_depth_only() -> None:
    hpa = child(plan_of(make_model().autoscaling(1, 3)), "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods"]


def test_pdb_allows_one_disruption() -> None:
    pdb = child(plan_of(make_model().replicas(2)), "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {"app.kubernetes.io/name": "infergate-server", "app.kubernetes.io/instance": "m"}
        },
    }


def test_service_ports() -> None:
    svc = child(plan_of(make_model().patch({"service": {"port": 9000}})), "Service")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]
    assert (
        svc["spec"]["selector"]
        == child(plan_of(make_model()), "Deployment")["spec"]["selector"]["matchLabels"]
    )
    llm = child(plan_of(make_model().llm()), "Service")
    assert [p["name"] for p in llm["spec"]["ports"]] == ["http", "openai"]
    assert [p["name"] for p in server(make_model().llm())["ports"]] == ["http", "openai"]


def test_llm_pods_get_shared_memory() -> None:
    assert any(m["mountPath"] == "/dev/shm" for m in server(make_model().llm())["volumeMounts"])
    assert not any(m["mountPath"] == "/dev/shm" for m in server(make_model())["volumeMounts"])


def test_pvc_artifact_is_mounted_read_only() -> None:
    pod = pod_spec(make_model().uri("pvc://models-claim/sentiment/model.onnx"))
    assert {
        "name": "artifact-pvc",
        "persistentVolumeClaim": {"claimName": "models-claim", "readOnly": True},
    } in pod["volumes"]
    assert any(m["mountPath"] == "/mnt/pvc/models-claim" for m in pod["initContainers"][0]["volumeMounts"])


def test_image_override_and_default() -> None:
    assert server(make_model())["image"] == OperatorSettings().server_image
    assert server(make_model().image("registry.local/igs@sha256:" + "a" * 64))["image"].startswith(
        "registry.local/"
    )


@pytest.mark.parametrize(
    ("edit", "spec_hash_changes"),
    [
        (lambda m: m.uri("s3://models/m/other.onnx"), True),
        (lambda m: m.golden_tensor("other"), True),
        (lambda m: m.gpus(1), True),
        (lambda m: m.replicas(5), False),
        (lambda m: m.autoscaling(1, 9), False),
        (lambda m: m.patch({"service": {"port": 9999}}), False),
    ],
)
def test_pods_roll_only_for_pod_shaping_changes(edit: Any, spec_hash_changes: bool) -> None:
    before = plan_of(make_model())
    after = plan_of(edit(make_model()))
    annotations = [
        child(p, "Deployment")["spec"]["template"]["metadata"]["annotations"] for p in (before, after)
    ]
    assert (annotations[0][ANNOTATION_SPEC_HASH] != annotations[1][ANNOTATION_SPEC_HASH]) is spec_hash_changes
    assert (before.revision != after.revision) is spec_hash_changes


def test_config_hash_follows_configmap_content() -> None:
    model = make_model().golden_ref("golden-cm")
    cases_a = (GoldenCase(name="a", prompt="x", expected_text="y"),)
    cases_b = (GoldenCase(name="a", prompt="x", expected_text="z"),)
    hashes = [
        child(desired_children(model.spec(), model.ctx(golden_cases=c)), "Deployment")["spec"]["template"][
            "metadata"
        ]["annotations"][ANNOTATION_CONFIG_HASH]
        for c in (cases_a, cases_b)
    ]
    assert hashes[0] != hashes[1]


def test_canary_builds_a_rollout_instead_of_a_deployment() -> None:
    assert "Rollout" in kinds(plan_of(make_model().canary()))
    assert "Deployment" not in kinds(plan_of(make_model().canary()))


def test_hpa_targets_the_rollout_for_canaries() -> None:
    from infergate_operator.builders.hpa import build_hpa

    model = make_model().canary().autoscaling(1, 3)
    assert build_hpa(model.spec(), model.ctx())["spec"]["scaleTargetRef"]["kind"] == "Rollout"


def test_monitoring_only_where_the_prometheus_operator_is() -> None:
    model = make_model("sent", "team-a")
    without = desired_children(model.spec(), model.ctx())
    assert "ServiceMonitor" not in kinds(without)
    assert not any(ref.api_version.startswith("monitoring.coreos.com/") for ref in without.delete)
    with_crds = desired_children(model.spec(), model.ctx(prometheus_operator=True))
    assert kinds(with_crds)[-2:] == ["ServiceMonitor", "PrometheusRule"]
    monitor = child(with_crds, "ServiceMonitor")
    service = child(with_crds, "Service")
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"][key] == value
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    alerts = child(with_crds, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {"InferGateGoldenCheckFailing", "InferGateHighErrorRate"} <= {a["alert"] for a in alerts}
    assert all('model="sent"' in a["expr"] for a in alerts)


def test_monitoring_opt_out_deletes_what_was_made() -> None:
    model = make_model().patch({"monitoring": {"serviceMonitor": False, "alerts": False}})
    plan = desired_children(model.spec(), model.ctx(prometheus_operator=True))
    assert "ServiceMonitor" not in kinds(plan)
    optional = {ref.kind for ref in plan.delete if ref.optional_crd}
    assert {"ServiceMonitor", "PrometheusRule"} <= optional


# --- ConfigMap / server.yaml ------------------------------------------------------------------------


def server_yaml(model: ModelWrapper, ctx: BuildContext | None = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        build_configmap(model.spec(), ctx or model.ctx())["data"]["server.yaml"]
    )
    return data


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://models/sentiment/3/model.onnx", "model.onnx"),
        ("https://example.com/a/b/model.plan?x=1", "model.plan"),
        ("pvc://claim/dir/model.onnx", "model.onnx"),
        ("hf://org/repo@" + "0" * 40, "repo"),
        ("oci://registry.example/models/sentiment@sha256:" + "a" * 64, "sentiment"),
        ("oci://registry.example/models/sentiment:v3", "sentiment"),
    ],
)
def test_artifact_path(uri: str, name: str) -> None:
    assert artifact_basename(uri) == name


def test_server_yaml_mirrors_the_spec() -> None:
    config = server_yaml(
        make_model("sent").golden_tensor().patch({"runtime": {"batching": {"maxBatchSize": 8}}})
    )
    assert config["model"] == {
        "name": "sent",
        "uri": "s3://models/m/model.onnx",
        "path": "/models/model.onnx",
        "format": "onnx",
        "sha256": "9f2c6e0d1c3b5a79f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c",
    }
    assert config["runtime"]["batching"] == {"maxBatchSize": 8, "maxQueueDelayMs": 0}
    assert config["golden"]["cases"][0]["name"] == "positive"
    assert config["golden"]["periodSeconds"] == 60
    # A SIGTERMed server keeps answering until kube-proxy has dropped it, then drains within the grace period.
    assert config["server"] == {
        "host": "0.0.0.0",
        "port": 8080,
        "shutdownDelaySeconds": 5.0,
        "drainTimeoutSeconds": 20.0,
        "readinessHoldSeconds": 3.0,
    }


def test_server_yaml_without_golden_set_is_not_required() -> None:
    assert server_yaml(make_model())["golden"] == {"cases": [], "required": False}


def test_server_yaml_takes_referenced_cases_from_the_context() -> None:
    model = make_model().golden_ref("cm")
    cases = (GoldenCase(name="a", prompt="x", expected_text="y"),)
    assert server_yaml(model, model.ctx(golden_cases=cases))["golden"]["cases"] == [
        {"name": "a", "prompt": "x", "expectedText": "y"}
    ]


@pytest.mark.parametrize(("cpu", "threads"), [("4", 4), ("1500m", 2), ("250m", 1), ("2.0", 2)])
def test_intra_op_threads_follow_the_cpu_request_unless_set(cpu: str, threads: int) -> None:
    assert server_yaml(make_model().cpu(cpu))["runtime"]["threads"] == {"intraOp": threads, "interOp": 0}
    pinned = make_model().cpu(cpu).patch({"runtime": {"threads": {"intraOp": 7}}})
    assert server_yaml(pinned)["runtime"]["threads"]["intraOp"] == 7


def test_without_a_cpu_request_threads_stay_the_runtime_default() -> None:
    assert server_yaml(make_model())["runtime"]["threads"] == {"intraOp": 0, "interOp": 0}


def test_outputs_providers_and_concurrency_reach_the_server() -> None:
    config = server_yaml(
        make_model().patch(
            {
                "model": {"outputs": ["461"]},
                "runtime": {
                    "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                    "maxConcurrentBatches": 2,
                },
            }
        )
    )
    assert config["model"]["outputs"] == ["461"]
    assert config["runtime"]["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert config["runtime"]["maxConcurrentBatches"] == 2


def test_a_tokenizer_artifact_is_fetched_beside_the_model() -> None:
    sha = "ab" * 32
    tok = server_yaml(
        make_model().patch({"runtime": {"tokenizer": {"uri": "s3://m/v2/tokenizer.json", "sha256": sha}}})
    )
    assert tok["runtime"]["tokenizer"] == {
        "inputName": "text",
        "maxLength": 128,
        "path": "/models/tokenizer/tokenizer.json",
        "uri": "s3://m/v2/tokenizer.json",
        "sha256": sha,
    }


def test_a_tokenizer_inside_a_directory_artifact_is_found_there() -> None:
    model = make_model().patch(
        {
            "model": {"uri": "pvc://models/minilm", "format": "onnx"},
            "runtime": {"tokenizer": {"path": "tok/t.json"}},
        }
    )
    assert server_yaml(model)["runtime"]["tokenizer"]["path"] == "/models/minilm/tok/t.json"


SERVER_CONFIG_MODELS = [
    make_model().patch({"runtime": {"tokenizer": {"uri": "s3://m/tokenizer.json", "sha256": "ab" * 32}}}),
    make_model()
    .cpu("2")
    .patch(
        {
            "model": {"outputs": ["461"]},
            "runtime": {"providers": ["CPUExecutionProvider"], "threads": {"interOp": 1}},
        }
    ),
    make_model(),
    make_model().golden_tensor().gpus(1).patch({"runtime": {"args": {"x": 1}, "precision": "fp16"}}),
    make_model().llm().golden_llm(),
    make_model().patch(
        {
            "model": {
                "signature": {"bundleUri": "s3://m/sig.bundle", "identity": "ci@x.org", "issuer": "https://x"}
            }
        }
    ),
]


@pytest.mark.parametrize("model", SERVER_CONFIG_MODELS)
def test_every_built_server_yaml_is_a_valid_server_config(model: ModelWrapper) -> None:
    config = pytest.importorskip("infergate_server.config")
    parsed = config.ServerConfig.from_dict(server_yaml(model))
    assert str(parsed.model.path).startswith("/models/")


TENANCY = {
    "tenancy": {
        "secretName": "m-api-keys",
        "tenants": [{"name": "team-a", "requestsPerSecond": 20, "maxConcurrent": 4}, {"name": "team-b"}],
    }
}


def test_tenancy_mounts_the_secret_into_the_server_only_and_renders_the_server_config() -> None:
    config = pytest.importorskip("infergate_server.config")
    model = make_model().patch(TENANCY)
    spec = pod_spec(model)
    assert {"name": "tenant-keys", "secret": {"secretName": "m-api-keys", "defaultMode": 0o440}} in spec[
        "volumes"
    ]
    mounts = {
        c["name"]: [v["name"] for v in c["volumeMounts"]] for c in spec["containers"] + spec["initContainers"]
    }
    assert "tenant-keys" in mounts["server"]
    assert "tenant-keys" not in mounts["fetch"]  # the step that reads remote sources never sees keys
    parsed = config.ServerConfig.from_dict(server_yaml(model))
    assert parsed.tenancy is not None
    assert str(parsed.tenancy.keys_dir) == "/etc/infergate-tenants"
    assert [(t.name, t.requests_per_second, t.max_concurrent) for t in parsed.tenancy.tenants] == [
        ("team-a", 20.0, 4),
        ("team-b", None, None),
    ]
    assert "tenant-keys" not in str(pod_spec(make_model()))


def test_tenant_names_must_be_unique() -> None:
    from pydantic import ValidationError

    dup = {"tenancy": {"secretName": "k", "tenants": [{"name": "a"}, {"name": "a"}]}}
    with pytest.raises(ValidationError, match="tenant names must be unique"):
        make_model().patch(dup).spec()


# --- purity -----------------------------------------------------------------------------------------

PURE_MODULES = [
    "spec",
    "spec_base",
    "spec_golden",
    "spec_rollout",
    "spec_tenancy",
    "context",
    "conditions",
    "observed",
    "status",
    "validation",
    "builders",
]
FORBIDDEN = {"kopf", "kubernetes", "asyncio", "time", "random", "aiohttp", "requests", "httpx", "socket"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_pure_modules_import_no_clients_clocks_or_loops() -> None:
    root = Path(__file__).resolve().parents[2] / "operator" / "infergate_operator"
    for name in PURE_MODULES:
        target = root / name
        paths = sorted(target.glob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for path in paths:
            assert not _imports(path) & FORBIDDEN, path


def test_network_policy_is_opt_in_and_admits_only_the_listed_peers() -> None:
    assert "NetworkPolicy" not in kinds(plan_of(make_model()))
    assert ChildRef("networking.k8s.io/v1", "NetworkPolicy", "m") in plan_of(make_model()).delete
    peers = [
        {"namespaceSelector": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        {
            "namespaceSelector": {"kubernetes.io/metadata.name": "monitoring"},
            "podSelector": {"app": "prometheus"},
        },
    ]
    model = make_model().llm().patch({"networkPolicy": {"allowFrom": peers}})
    policy = child(plan_of(model), "NetworkPolicy")
    assert policy["spec"]["podSelector"] == child(plan_of(model), "Deployment")["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app": "prometheus"}},
        },
    ]
    assert [p["port"] for p in rule["ports"]] == [8080, 8000]  # the server, and vLLM's OpenAI port


def test_tls_mounts_the_secret_and_switches_probes_scrapes_and_the_golden_check_to_https() -> None:
    config = pytest.importorskip("infergate_server.config")
    tls = {"tls": {"secretName": "m-tls"}}
    model = make_model().golden_tensor().patch(tls)
    spec = pod_spec(model)
    assert {"name": "tls", "secret": {"secretName": "m-tls", "defaultMode": 0o440}} in spec["volumes"]
    srv = server(model)
    assert {"name": "tls", "mountPath": "/etc/infergate-tls", "readOnly": True} in srv["volumeMounts"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert srv[probe]["httpGet"]["scheme"] == "HTTPS"
    parsed = config.ServerConfig.from_dict(server_yaml(model))
    assert parsed.server.tls is not None
    assert str(parsed.server.tls.cert_file) == "/etc/infergate-tls/tls.crt"
    canary = plan_of(make_model().golden_tensor().canary().patch(tls))
    golden = [
        t
        for t in canary.apply
        if t["kind"] == "AnalysisTemplate" and t["metadata"]["name"].endswith("-golden")
    ]
    web = golden[0]["spec"]["metrics"][0]["provider"]["web"]
    assert web["url"].startswith("https://")
    assert web["insecure"] is True
    assert "scheme" not in server(make_model())["readinessProbe"]["httpGet"]  # without TLS: no rollout


def test_tenancy_is_refused_for_vllm_whose_openai_port_has_no_tenant_keys() -> None:
    from pydantic import ValidationError

    tenancy = {"tenancy": {"secretName": "k", "tenants": [{"name": "a"}]}}
    with pytest.raises(ValidationError, match="not supported with the vllm backend"):
        make_model().llm().patch(tenancy).spec()


OCI_URI = "oci://registry.example:5000/models/tiny@sha256:" + "ab" * 32


def test_an_oci_pull_secret_reaches_the_fetch_step_only() -> None:
    model = make_model().uri(OCI_URI, sha256=None).patch({"model": {"pullSecretName": "regcred"}})
    pod = pod_spec(model)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "registry-auth"]
    assert volume["secret"]["secretName"] == "regcred"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]
    (fetch,) = pod["initContainers"]
    assert {"name": "registry-auth", "mountPath": "/etc/infergate-registry", "readOnly": True} in fetch[
        "volumeMounts"
    ]
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert env["INFERGATE_REGISTRY_AUTH_FILE"] == "/etc/infergate-registry/.dockerconfigjson"
    main = pod["containers"][0]
    assert all(m["name"] != "registry-auth" for m in main["volumeMounts"])
    assert all(e["name"] != "INFERGATE_REGISTRY_AUTH_FILE" for e in main["env"])
    config = yaml.safe_load(child(plan_of(model), "ConfigMap")["data"]["server.yaml"])
    assert config["model"]["uri"] == OCI_URI
    assert config["model"]["path"] == "/models/tiny"
    assert "pullSecretName" not in config["model"]


def test_an_image_volume_mounts_the_pinned_image_read_only_and_the_fetch_step_verifies_it_in_place() -> None:
    config_module = pytest.importorskip("infergate_server.config")
    sha = "cd" * 32
    image = {"model": {"imageVolume": {"path": "weights/model.onnx"}, "pullSecretName": "regcred"}}
    model = make_model().uri(OCI_URI, sha256=sha).patch(image)
    settings = OperatorSettings(node_cache="hostPath:/var/lib/infergate/models")
    plan = desired_children(model.spec(), model.ctx(settings))
    pod = child(plan, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "model-image"]
    assert volume["image"] == {"reference": OCI_URI.removeprefix("oci://"), "pullPolicy": "IfNotPresent"}
    # The kubelet pulls the image with the pull secret; the fetch step pulls nothing: no credentials.
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert all(v["name"] not in ("registry-auth", "node-cache") for v in pod["volumes"])
    (fetch,) = pod["initContainers"]
    mount = {"name": "model-image", "mountPath": "/model-image", "readOnly": True}
    assert mount in fetch["volumeMounts"]
    assert mount in pod["containers"][0]["volumeMounts"]
    for container in (fetch, pod["containers"][0]):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["INFERGATE_FETCH_RECORD_DIR"] == "/models"  # the stamp cannot go beside a read-only file
        assert "INFERGATE_REGISTRY_AUTH_FILE" not in env
        assert "INFERGATE_NODE_CACHE" not in env
    server_yaml = yaml.safe_load(child(plan, "ConfigMap")["data"]["server.yaml"])
    assert server_yaml["model"]["path"] == "/model-image/weights/model.onnx"
    assert server_yaml["model"]["imageVolume"] is True
    parsed = config_module.ServerConfig.from_dict(server_yaml)
    assert parsed.model.image_volume
    assert parsed.model.sha256 == sha
    without = yaml.safe_load(
        child(plan_of(make_model().uri(OCI_URI, sha256=sha)), "ConfigMap")["data"]["server.yaml"]
    )
    assert "imageVolume" not in without["model"]


def test_plain_http_registries_come_from_settings() -> None:
    settings = OperatorSettings(oci_plain_http_registries="registry.local:5000, other:80")  # type: ignore[arg-type]
    plan = desired_children(make_model().uri(OCI_URI, sha256=None).spec(), make_model().ctx(settings))
    fetch = child(plan, "Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert env["INFERGATE_OCI_PLAIN_HTTP"] == "registry.local:5000,other:80"
    assert "INFERGATE_OCI_PLAIN_HTTP" not in {
        e["name"] for e in pod_spec(make_model())["initContainers"][0]["env"]
    }


def test_a_node_cache_puts_the_artifact_in_its_pins_entry_read_only_for_the_server() -> None:
    settings = OperatorSettings(node_cache="hostPath:/var/lib/infergate/models", node_cache_max_bytes=10**9)
    model = make_model().uri(OCI_URI, sha256=None)
    plan = desired_children(model.spec(), model.ctx(settings))
    pod = child(plan, "Deployment")["spec"]["template"]["spec"]
    assert {
        "name": "node-cache",
        "hostPath": {"path": "/var/lib/infergate/models", "type": "Directory"},
    } in pod["volumes"]
    (fetch,) = pod["initContainers"]
    server_mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "node-cache", "mountPath": "/var/cache/infergate", "readOnly": False} in fetch[
        "volumeMounts"
    ]
    assert {"name": "node-cache", "mountPath": "/var/cache/infergate", "readOnly": True} in server_mounts
    env = {e["name"]: e.get("value") for e in fetch["env"]}
    assert env["INFERGATE_NODE_CACHE"] == "/var/cache/infergate"
    assert env["INFERGATE_NODE_CACHE_MAX_BYTES"] == str(10**9)
    assert env["INFERGATE_FETCH_RECORD_DIR"] == "/models"
    config = yaml.safe_load(child(plan, "ConfigMap")["data"]["server.yaml"])
    assert config["model"]["path"] == "/var/cache/infergate/entries/oci-" + "ab" * 32 + "/tiny"
    pvc = desired_children(model.spec(), model.ctx(OperatorSettings(node_cache="pvc:model-cache")))
    volumes = child(pvc, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "node-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in volumes


def test_without_a_node_cache_every_pod_keeps_its_own_copy() -> None:
    pod = pod_spec(make_model().uri(OCI_URI, sha256=None))
    assert all(v["name"] != "node-cache" for v in pod["volumes"])
    config = yaml.safe_load(child(plan_of(make_model()), "ConfigMap")["data"]["server.yaml"])
    assert config["model"]["path"].startswith("/models/")


def test_both_containers_wait_for_this_revisions_config() -> None:
    """The digests the fetch step and the server wait for are those of the ConfigMap in the same plan."""
    model = make_model()
    plan = plan_of(model)
    data = child(plan, "ConfigMap")["data"]
    want = ",".join(f"{key}={hashlib.sha256(data[key].encode()).hexdigest()}" for key in sorted(data))
    pod = child(plan, "Deployment")["spec"]["template"]["spec"]
    for container in (*pod["initContainers"], *pod["containers"]):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["INFERGATE_CONFIG_DIGESTS"] == want, container["name"]


def test_a_readiness_probe_outlasts_the_servers_readiness_hold() -> None:
    """The server holds a mid-startup readiness request up to readinessHoldSeconds: the kubelet's probe must
    not time out first, or the hold would turn every mid-startup probe into a failure."""
    model = make_model().golden_tensor()
    hold = server_yaml(model)["server"]["readinessHoldSeconds"]
    assert 0 < hold < server(model)["readinessProbe"]["timeoutSeconds"]
