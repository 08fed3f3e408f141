"""The chart's PrometheusRule and the dashboard's queries, checked by promtool (Debian's prometheus):
every expression parses, and each alert fires on the series it is for and stays quiet otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging.render import CHART, docs, helm_template, one

INSTALL = Path(__file__).with_name("install-promtool")
NS = {"namespace": "team-a"}


@pytest.fixture(scope="module")
def promtool() -> Path:
    result = subprocess.run([str(INSTALL)], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, f"install-promtool failed:\n{result.stderr[-2000:]}"
    return Path(result.stdout.strip().splitlines()[-1])


def rule_groups() -> list[dict[str, Any]]:
    rule = one(
        docs(helm_template({"metrics": {"prometheusRule": {"enabled": True}}}, monitoring=True)),
        "PrometheusRule",
    )
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def promtool_run(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)], capture_output=True, text=True, check=False, timeout=120
    )


def test_rules_and_their_templates_are_valid(promtool: Path, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}))
    result = promtool_run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "15 rules found" in result.stdout


def test_promtool_rejects_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    """Guards the test above."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "sum by (x"}]}]})
    )
    assert promtool_run(promtool, "check", "rules", path).returncode != 0


def test_dashboard_queries_parse(promtool: Path, tmp_path: Path) -> None:
    board = json.loads((CHART / "dashboards" / "infergate.json").read_text())
    rules = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = (
                target["expr"]
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$namespace", ".*")
                .replace("$model", ".*")
            )
            rules.append({"record": f"panel_{panel['id']}_{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool_run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in {**NS, **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def sample(record: str, model: str, value: float) -> dict[str, Any]:
    return {"labels": f'{record}{{namespace="team-a",model="{model}"}}', "value": value}


def expected(alert: str, severity: str, **labels: str) -> dict[str, Any]:
    return {"alertname": alert, "exp_alerts": [{"exp_labels": {"severity": severity, **NS, **labels}}]}


def test_each_alert_fires_on_its_symptom_and_only_there(promtool: Path, tmp_path: Path) -> None:
    groups = rule_groups()
    for group in groups:  # annotations are checked above; the unit test is about expressions and labels
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    latency = "inference_latency_seconds_bucket"
    input_series = [
        # slow: every request lands between 1 s and 2.5 s (p95 ≈ 2.4 s > 1.5 s); fast: all under 0.5 s.
        *(
            series(latency, {"model": "slow", "le": le}, v)
            for le, v in (("0.5", "0x40"), ("1", "0x40"), ("2.5", "0+10x40"), ("+Inf", "0+10x40"))
        ),
        *(series(latency, {"model": "fast", "le": le}, "0+10x40") for le in ("0.5", "1", "2.5", "+Inf")),
        series("inference_requests_total", {"model": "bad", "status": "500"}, "0+5x40"),
        series("inference_requests_total", {"model": "bad", "status": "200"}, "0+5x40"),
        series("inference_requests_total", {"model": "good", "status": "200"}, "0+50x40"),
        series("inference_requests_total", {"model": "good", "status": "429"}, "0+5x40"),
        series("inference_queue_depth", {"model": "busy"}, "500x40"),
        series("inference_queue_depth", {"model": "idle"}, "3x40"),
        series("golden_checks_total", {"model": "drifted", "result": "Failed"}, "0+1x40"),
        series("golden_checks_total", {"model": "steady", "result": "Passed"}, "0+1x40"),
        # two replicas of one model: the worse one's score counts; another model stays under 0.2
        series("inference_input_drift_psi", {"model": "shifted", "input": "x", "pod": "s-0"}, "0.05x40"),
        series("inference_input_drift_psi", {"model": "shifted", "input": "x", "pod": "s-1"}, "0.6x40"),
        series("inference_input_drift_psi", {"model": "stable", "input": "x", "pod": "t-0"}, "0.04x40"),
        series("DCGM_FI_DEV_FB_USED", {"pod": "full-0", "gpu": "0"}, "79000x40"),
        series("DCGM_FI_DEV_FB_FREE", {"pod": "full-0", "gpu": "0"}, "1000x40"),
        series("DCGM_FI_DEV_FB_USED", {"pod": "half-0", "gpu": "0"}, "40000x40"),
        series("DCGM_FI_DEV_FB_FREE", {"pod": "half-0", "gpu": "0"}, "40000x40"),
        # idle: 2 GPUs busy 3 s a minute (2.5 %); working: 1 GPU busy 30 s a minute. Both serve 1 req/s.
        series("inference_gpus_allocated", {"model": "idle", "pod": "idle-0"}, "2x120"),
        series("inference_gpu_busy_seconds_total", {"model": "idle", "pod": "idle-0"}, "0+3x120"),
        series("inference_gpus_allocated", {"model": "working", "pod": "working-0"}, "1x120"),
        series("inference_gpu_busy_seconds_total", {"model": "working", "pod": "working-0"}, "0+30x120"),
        series("inference_requests_total", {"model": "idle", "pod": "idle-0", "status": "200"}, "0+60x120"),
        # the sweep on node n1 evicted one entry at 20m; n2's found nothing
        series("infergate_node_cache_corrupted_entries_total", {"node": "n1"}, "0x20 1x20"),
        series("infergate_node_cache_corrupted_entries_total", {"node": "n2"}, "0x40"),
    ]
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": "30m", **expected("InferGateHighP95Latency", "warning", model="slow")},
                    {"eval_time": "30m", **expected("InferGateHighErrorRate", "critical", model="bad")},
                    {"eval_time": "30m", **expected("InferGateQueueBacklog", "warning", model="busy")},
                    {"eval_time": "30m", **expected("InferGateGoldenFailures", "critical", model="drifted")},
                    {
                        "eval_time": "30m",
                        **expected("InferGateGPUMemoryHigh", "warning", pod="full-0", gpu="0"),
                    },
                    {
                        "eval_time": "30m",
                        **expected("InferGateInputDrift", "warning", model="shifted", input="x"),
                    },
                    {"eval_time": "30m", **expected("InferGateNodeCacheCorruption", "warning", node="n1")},
                    {"eval_time": "10m", "alertname": "InferGateNodeCacheCorruption", "exp_alerts": []},
                    # `for: 10m` holds them back at first.
                    {"eval_time": "5m", "alertname": "InferGateQueueBacklog", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "InferGateHighErrorRate", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "InferGateInputDrift", "exp_alerts": []},
                    # Idle GPUs: only after idleGPUFor (1h), only for the idle model.
                    {"eval_time": "90m", **expected("InferGateIdleGPUs", "warning", model="idle")},
                    {"eval_time": "30m", "alertname": "InferGateIdleGPUs", "exp_alerts": []},
                ],
                "promql_expr_test": [
                    {
                        "eval_time": "30m",
                        "expr": "infergate:requests_per_gpu_hour:rate5m",
                        "exp_samples": [sample("infergate:requests_per_gpu_hour:rate5m", "idle", 1800)],
                    },
                    {
                        "eval_time": "30m",
                        "expr": "infergate:gpu_idle_seconds:rate5m",
                        "exp_samples": [
                            sample("infergate:gpu_idle_seconds:rate5m", "idle", 1.95),
                            sample("infergate:gpu_idle_seconds:rate5m", "working", 0.5),
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool_run(promtool, "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
