"""Issue 18's spec fields rendered for the server: spec.rollout.shadow, the shadow-divergence gate and
spec.monitoring.inputDrift (its baseline carried in <name>-config beside server.yaml)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import yaml
from infergate_operator.builders.analysis import gate_metrics
from infergate_operator.builders.configmap import build_configmap
from infergate_operator.canary import failure_detail
from infergate_operator.context import make_context
from infergate_operator.settings import OperatorSettings
from infergate_operator.validation import check_drift_baseline, check_spec
from infergate_server.config import ServerConfig
from infergate_server.drift import record_baseline

from tests.unit.igm import ModelWrapper, make_model

SHADOW = {"rollout": {"shadow": {"samplePercent": 10, "maxRequestsPerSecond": 50}}}
BASELINE = record_baseline("m", {"x": [np.arange(100.0)]}).to_json_text()


def configmap(model: ModelWrapper, baseline: str | None = None) -> dict[str, Any]:
    meta = model.obj()["metadata"]
    ctx = make_context(meta, model.spec(), OperatorSettings(), drift_baseline=baseline)
    data: dict[str, Any] = build_configmap(model.spec(), ctx)["data"]
    return data


def test_shadow_copies_to_the_canary_service_and_the_server_takes_it() -> None:
    data = configmap(make_model("sentiment", "team-a").canary().patch(SHADOW))
    parsed = ServerConfig.from_dict(yaml.safe_load(data["server.yaml"]))
    assert parsed.shadow is not None
    assert parsed.shadow.target_url == "http://sentiment-canary.team-a.svc:8080"
    assert (parsed.shadow.sample_percent, parsed.shadow.max_requests_per_second) == (10, 50)


def test_shadow_to_a_named_model_uses_its_service_and_name() -> None:
    model = make_model("a", "ns").patch(
        {"rollout": {"shadow": {**SHADOW["rollout"]["shadow"], "target": "b"}}}
    )
    server = yaml.safe_load(configmap(model)["server.yaml"])
    assert server["shadow"]["targetUrl"] == "http://b.ns.svc:8080"
    assert server["shadow"]["model"] == "b"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (SHADOW, "spec.rollout.shadow"),  # neither a target nor a canary
        (
            {"rollout": {"strategy": "Canary", "canary": {"analysis": {"maxShadowDivergence": 0.01}}}},
            "spec.rollout.canary",
        ),
    ],
)
def test_shadow_misuse_names_the_field(patch: dict[str, Any], field: str) -> None:
    check = check_spec(make_model().patch(patch).raw)
    assert any(e.startswith(field) for e in check.errors), check.errors


def test_shadow_divergence_gate_reads_the_stable_pods() -> None:
    model = make_model("m", "ns").canary().patch(SHADOW)
    model.patch({"rollout": {"canary": {"analysis": {"maxShadowDivergence": 0.01}}}})
    metrics = {m["name"]: m for m in gate_metrics(model.spec(), model.ctx())}
    gate = metrics["shadow-divergence"]
    query = gate["provider"]["prometheus"]["query"]
    assert 'rollouts_pod_template_hash!="{{args.canary-hash}}"' in query
    assert 'result="diverged"' in query
    assert gate["successCondition"] == "isNaN(result) || result <= 0.01"
    detail = failure_detail(model.spec(), "shadow-divergence", "0.4", "")
    assert detail == (
        "gate shadow-divergence: measured 0.4, limit 0.01 (spec.rollout.canary.analysis.maxShadowDivergence)"
    )


def test_input_drift_carries_the_baseline_beside_server_yaml() -> None:
    ref = {"baselineConfigMapRef": {"name": "m-baseline", "key": "baseline.json"}, "windowSeconds": 30}
    data = configmap(make_model().patch({"monitoring": {"inputDrift": ref}}), BASELINE)
    parsed = ServerConfig.from_dict(yaml.safe_load(data["server.yaml"]))
    assert parsed.drift is not None
    assert str(parsed.drift.baseline_path) == "/etc/infergate/drift-baseline.json"
    assert parsed.drift.window_seconds == 30
    assert json.loads(data["drift-baseline.json"])["inputs"]["x"]["count"] == 100
    stats_only = configmap(make_model().patch({"monitoring": {"inputDrift": {}}}))
    assert "drift-baseline.json" not in stats_only
    assert "baselinePath" not in yaml.safe_load(stats_only["server.yaml"])["drift"]


def test_a_baseline_that_is_not_one_says_why() -> None:
    assert check_drift_baseline(BASELINE) == ""
    assert check_drift_baseline("{").startswith("not JSON")
    assert "golden record --baseline" in check_drift_baseline('{"cases": []}')
