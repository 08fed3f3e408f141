"""`infergate-server cache sweep`: the node cache's periodic re-verification, as a long-running process.

One per node (the chart's node-cache-sweep DaemonSet, with the cache's hostPath mounted read-write): every
`intervalSeconds` it sweeps the cache (cache_sweep.py) and reports each evicted entry three ways: a line in
the cache's events.jsonl (the sweep itself), a Kubernetes Event (cache_events.py) and these metrics, served
on `metricsAddress:metricsPort` for Prometheus. SIGTERM ends it between two entries at the latest.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import cache_sweep
from .cache_events import Reporter
from .cache_sweep import Finding, Outcome

log = logging.getLogger(__name__)


class SweepSettings(BaseModel):
    """The sweep's command line, validated (a bad value is refused naming its flag)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: Path = Field(description="the node cache's root (entries/, locks/, events.jsonl)")
    interval_seconds: float = Field(
        default=3600.0, gt=0, description="pause between the end of a sweep and the next"
    )
    once: bool = False
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0: no metrics endpoint")
    metrics_address: str = "0.0.0.0"  # a pod's port; tests pass 127.0.0.1

    @field_validator("root")
    @classmethod
    def _is_a_directory(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value


class SweepMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sweeps = Counter(
            "infergate_node_cache_sweeps", "Completed sweeps of the node cache.", registry=r
        )
        self.swept = Counter(
            "infergate_node_cache_swept_entries",
            "Entries the sweep looked at, by outcome: verified, corrupted (evicted), locked (a fetch held"
            " it), unpinned (no pin record yet), errored (could not be read).",
            ["outcome"],
            registry=r,
        )
        self.corrupted = Counter(
            "infergate_node_cache_corrupted_entries",
            "Entries that failed re-verification in a sweep and were evicted.",
            registry=r,
        )
        self.verified_bytes = Counter(
            "infergate_node_cache_verified_bytes", "Bytes re-hashed and found matching their pin.", registry=r
        )
        self.entries = Gauge("infergate_node_cache_entries", "Entries after the last sweep.", registry=r)
        self.bytes = Gauge(
            "infergate_node_cache_bytes",
            "Bytes in the entries left after the last sweep (entries a fetch held not counted).",
            registry=r,
        )
        self.duration = Gauge(
            "infergate_node_cache_sweep_duration_seconds", "How long the last sweep took.", registry=r
        )
        self.last = Gauge(
            "infergate_node_cache_last_sweep_timestamp_seconds",
            "When the last sweep ended (Unix time).",
            registry=r,
        )
        for outcome in Outcome:  # every series exists from the start: rate() and absent() behave
            self.swept.labels(outcome.value)

    def observe(self, findings: list[Finding], seconds: float, ended: float) -> None:
        self.sweeps.inc()
        for f in findings:
            self.swept.labels(f.outcome.value).inc()
        self.corrupted.inc(sum(f.outcome is Outcome.CORRUPTED for f in findings))
        self.verified_bytes.inc(sum(f.bytes for f in findings if f.outcome is Outcome.VERIFIED))
        kept = [f for f in findings if f.outcome is not Outcome.CORRUPTED]
        self.entries.set(len(kept))
        self.bytes.set(sum(f.bytes for f in kept))
        self.duration.set(seconds)
        self.last.set(ended)


def sweep_once(
    root: Path, metrics: SweepMetrics, reporter: Reporter, stopping: Callable[[], bool] = lambda: False
) -> list[Finding]:
    started = time.monotonic()
    findings = cache_sweep.sweep(root, stopping)
    metrics.observe(findings, time.monotonic() - started, time.time())
    for f in findings:
        if f.outcome is Outcome.CORRUPTED:
            reporter.corrupted(f.key, f.detail, datetime.now(UTC))
    counts = {o.value: sum(f.outcome is o for f in findings) for o in Outcome}
    log.info("node cache sweep of %s: %s", root, ", ".join(f"{n} {k}" for k, n in counts.items()))
    return findings


def run(settings: SweepSettings, reporter: Reporter, stop: threading.Event | None = None) -> int:
    """Sweep now, then every interval until `stop` (SIGTERM/SIGINT when None); with `once`, sweep once."""
    metrics = SweepMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, settings.metrics_address, registry=metrics.registry)
        log.info("node cache sweep: metrics on %s:%d", settings.metrics_address, settings.metrics_port)
    if stop is None:
        stop = threading.Event()
        _stop_on_signals(stop.set)
    while True:
        sweep_once(settings.root, metrics, reporter, stop.is_set)
        if settings.once or stop.wait(settings.interval_seconds):
            return 0


def _stop_on_signals(stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop())
