"""The operator's own Prometheus metrics: reconcile count, duration and errors per kind of work."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "infergate_operator_reconciles_total",
    "Reconciles finished, by kind of work and result",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "infergate_operator_reconcile_duration_seconds",
    "Wall time of one reconcile, by kind of work",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_WRITES = Counter(
    "infergate_operator_api_writes_total", "Writes the operator sent to the API server", ["verb", "kind"]
)
CHILD_REPAIRS = Counter(
    "infergate_operator_child_repairs_total", "Children put back after being deleted or edited", ["kind"]
)
EVENTS_DROPPED = Counter(
    "infergate_operator_events_dropped_total",
    "Events not posted: the model's Event budget (burst 25, then 1 per 5 min) was spent",
    ["reason"],
)
RECONCILE_SLOTS = Gauge(
    "infergate_operator_reconcile_slots", "Reconcile slots in use, and reconciles waiting for one", ["state"]
)
