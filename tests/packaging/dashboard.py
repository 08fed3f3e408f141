"""Builds the Grafana dashboard the chart ships (charts/infergate/dashboards/infergate.json).

`python -m tests.packaging.dashboard` rewrites the JSON; test_dashboard fails when the checked-in file
differs from this render, so edit here, not in the JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "charts" / "infergate" / "dashboards" / "infergate.json"
UID = "infergate-models"
SELECTOR = 'namespace=~"$namespace", model=~"$model"'


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def _panel(
    panel_id: int, title: str, unit: str, grid: tuple[int, int, int, int], targets: list[dict[str, Any]]
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": targets,
    }


def _quantile(q: str, ref: str) -> dict[str, Any]:
    expr = (
        f"histogram_quantile({q}, sum by (namespace, model, le) "
        f"(rate(inference_latency_seconds_bucket{{{SELECTOR}}}[$__rate_interval])))"
    )
    return _target(expr, f"p{q[2:]} {{{{namespace}}}}/{{{{model}}}}", ref)


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def render() -> dict[str, Any]:
    by = "sum by (namespace, model)"
    ns = 'namespace=~"$namespace"'
    panels = [
        _panel(
            1,
            "Latency p50 / p95 / p99",
            "s",
            (0, 0, 12, 8),
            [_quantile("0.50", "A"), _quantile("0.95", "B"), _quantile("0.99", "C")],
        ),
        _panel(
            2,
            "Throughput (requests/s by status)",
            "reqps",
            (12, 0, 12, 8),
            [
                _target(
                    f"sum by (namespace, model, status) (rate(inference_requests_total{{{SELECTOR}}}"
                    "[$__rate_interval]))",
                    "{{namespace}}/{{model}} {{status}}",
                    "A",
                )
            ],
        ),
        _panel(
            3,
            "Error ratio (5xx / all)",
            "percentunit",
            (0, 8, 12, 8),
            [
                _target(
                    f'{by} (rate(inference_requests_total{{{SELECTOR}, status=~"5.."}}[$__rate_interval]))'
                    f" / {by} (rate(inference_requests_total{{{SELECTOR}}}[$__rate_interval]))",
                    "{{namespace}}/{{model}}",
                    "A",
                ),
                _target(
                    f'{by} (rate(inference_requests_total{{{SELECTOR}, status="429"}}[$__rate_interval]))',
                    "{{namespace}}/{{model}} rejected (429/s)",
                    "B",
                ),
            ],
        ),
        _panel(
            4,
            "Queue depth",
            "short",
            (12, 8, 12, 8),
            [_target(f"{by} (inference_queue_depth{{{SELECTOR}}})", "{{namespace}}/{{model}}", "A")],
        ),
        _panel(
            5,
            "Golden checks by result",
            "short",
            (0, 16, 12, 8),
            [
                _target(
                    f"sum by (namespace, model, result) (increase(golden_checks_total{{{SELECTOR}}}"
                    "[$__rate_interval]))",
                    "{{namespace}}/{{model}} {{result}}",
                    "A",
                )
            ],
        ),
        _panel(
            6,
            "Replicas (ready / scraped)",
            "short",
            (12, 16, 12, 8),
            [
                _target(f"{by} (inference_model_ready{{{SELECTOR}}})", "{{namespace}}/{{model}} ready", "A"),
                _target(
                    f"count by (namespace, model) (inference_model_ready{{{SELECTOR}}})",
                    "{{namespace}}/{{model}} scraped",
                    "B",
                ),
            ],
        ),
        _panel(
            7,
            "GPU memory used (DCGM)",
            "percentunit",
            (0, 24, 24, 8),
            [
                _target(
                    f"max by (namespace, pod, gpu) (DCGM_FI_DEV_FB_USED{{{ns}}}"
                    f" / (DCGM_FI_DEV_FB_USED{{{ns}}} + DCGM_FI_DEV_FB_FREE{{{ns}}}))",
                    "{{namespace}}/{{pod}} gpu {{gpu}}",
                    "A",
                )
            ],
        ),
        _panel(
            8,
            "Input drift (PSI against the baseline; alert above 0.2)",
            "short",
            (0, 32, 24, 8),
            [
                _target(
                    f"max by (namespace, model, input) (inference_input_drift_psi{{{SELECTOR}}})",
                    "{{namespace}}/{{model}} {{input}}",
                    "A",
                )
            ],
        ),
        # Cost: the chart's recording rules (metrics.prometheusRule, docs/autoscaling.md).
        _panel(
            9,
            "GPU-seconds allocated vs busy (per second)",
            "short",
            (0, 40, 12, 8),
            [
                _target(
                    f"infergate:gpus_allocated:sum{{{SELECTOR}}}", "{{namespace}}/{{model}} allocated", "A"
                ),
                _target(
                    f"infergate:gpu_busy_seconds:rate5m{{{SELECTOR}}}", "{{namespace}}/{{model}} busy", "B"
                ),
                _target(f"infergate:replicas:count{{{SELECTOR}}}", "{{namespace}}/{{model}} replicas", "C"),
            ],
        ),
        _panel(
            10,
            "Cost per 1k requests",
            "currencyUSD",
            (12, 40, 12, 8),
            [
                _target(
                    f"infergate:cost_per_1k_requests:rate5m{{{SELECTOR}}}", "{{namespace}}/{{model}}", "A"
                ),
                _target(
                    f"infergate:requests_per_gpu_hour:rate5m{{{SELECTOR}}}",
                    "{{namespace}}/{{model}} requests per GPU-hour",
                    "B",
                ),
            ],
        ),
        _panel(
            11,
            "Idle GPU hours (over the dashboard's range)",
            "h",
            (0, 48, 24, 8),
            [
                _target(
                    f"{by} (sum_over_time(infergate:gpu_idle_seconds:rate5m{{{SELECTOR}}}[$__range:1m]))"
                    " * 60 / 3600",
                    "{{namespace}}/{{model}}",
                    "A",
                )
            ],
        ),
    ]
    return {
        "uid": UID,
        "title": "infergate: inference models",
        "description": "Latency, throughput, errors, queue, golden checks, replicas, input drift, cost.",
        "tags": ["infergate", "inference"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("namespace", "Namespace", "label_values(inference_requests_total, namespace)"),
                _variable(
                    "model", "Model", 'label_values(inference_requests_total{namespace=~"$namespace"}, model)'
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render_text() -> str:
    return json.dumps(render(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(render_text())
    sys.stdout.write(f"wrote {TARGET.relative_to(REPO)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
