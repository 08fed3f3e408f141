"""Prometheus metrics, named exactly as DESIGN §4, on a registry of the server's own."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from infergate_server.loop_metrics import LoopCounter, LoopHistogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and friends
        PlatformCollector(registry=self.registry)
        r = self.registry
        # Updated on every request, on the loop's thread only: loop_metrics.py (no lock per update).
        self.requests = LoopCounter(
            "inference_requests", "Inference requests by final HTTP status.", ["model", "status"], registry=r
        )
        self._by_status: dict[tuple[str, int], Any] = {}
        self.latency = LoopHistogram(
            "inference_latency_seconds",
            "Time from request arrival to response, successful requests.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Requests waiting for a batch.", ["model"], registry=r
        )
        # Cost signals (docs/autoscaling.md): what the replica holds and how much of the time it works.
        self.busy_seconds = Counter(
            "inference_busy_seconds",
            "Wall time with at least one batch running in the backend (the server's own busy time).",
            ["model"],
            registry=r,
        )
        self.gpus_allocated = Gauge(
            "inference_gpus_allocated",
            "GPUs this replica was given (NVIDIA_VISIBLE_DEVICES, set by the device plugin); 0 on CPU.",
            ["model"],
            registry=r,
        )
        self.gpu_busy_seconds = Counter(
            "inference_gpu_busy_seconds",
            "Busy time times the GPUs held: GPU-seconds spent working.",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "inference_batch_size", "Rows per backend call.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.golden_checks = Counter(
            "golden_checks", "Golden-set runs by result.", ["model", "result"], registry=r
        )
        self.model_ready = Gauge(
            "inference_model_ready", "1 when the model serves traffic.", ["model"], registry=r
        )
        self.startup_seconds = Gauge(
            "inference_startup_phase_seconds",
            "How long each startup phase took: fetch (the init container's download and digest check),"
            " verify, load, warmup, golden.",
            ["model", "phase"],
            registry=r,
        )
        self.startup_bytes = Gauge(
            "inference_startup_phase_bytes",
            "Bytes a startup phase read (fetch, verify).",
            ["model", "phase"],
            registry=r,
        )
        self.startup_cache = Gauge(
            "inference_startup_cache",
            "1 for how this replica's fetch used the node cache: hit (a verified entry reused), miss"
            " (filled),"
            " refetched (an entry that failed re-verification was evicted and filled again).",
            ["model", "result"],
            registry=r,
        )
        self.startup_failures = Counter(
            "inference_startup_failures", "Startup steps that failed.", ["model", "step"], registry=r
        )
        # One series per process: what actually runs (runtime_facts.py), value 1.
        self.runtime_info = Gauge(
            "inference_runtime_info",
            "What this server runs: backend, runtime version, provider, precision, threads, GPU, digest.",
            ["model", "backend", "runtime", "provider", "precision", "intra_op_threads", "gpu",
             "gpu_memory_mib", "sha256"],
            registry=r,
        )  # fmt: skip
        # Input drift (drift.py): label values are the model's declared input names, at most 16.
        self.input_values = Counter(
            "inference_input_values", "Input values folded into drift statistics.", ["model", "input"],
            registry=r,
        )  # fmt: skip
        self.input_stat = Gauge(
            "inference_input_stat",
            "Statistics of an input's values over the last closed window: mean, std, min, max,"
            " zero_fraction (BYTES inputs: lengths in bytes).",
            ["model", "input", "stat"],
            registry=r,
        )
        self.input_psi = Gauge(
            "inference_input_drift_psi",
            "Population Stability Index of an input's last closed window against the recorded baseline.",
            ["model", "input"],
            registry=r,
        )
        self.drift_skipped = Counter(
            "inference_drift_skipped_requests",
            "Served requests left out of drift statistics because the fold queue was full.",
            ["model"],
            registry=r,
        )
        # Shadow traffic (shadow.py): result is one of shadow.RESULTS; output is a declared output name.
        self.shadow_requests = Counter(
            "inference_shadow_requests",
            "Served requests sampled for the shadow candidate, by what became of them: matched, diverged,"
            " errored, dropped_rate, dropped_queue.",
            ["model", "result"],
            registry=r,
        )
        self.shadow_abs_error = Histogram(
            "inference_shadow_abs_error",
            "Largest absolute difference between the candidate's output and the answer given.",
            ["model", "output"],
            buckets=(0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0),
            registry=r,
        )
        # Per tenant: label values come only from configured tenant names (tenancy.py), never a client.
        self.tenant_requests = Counter(
            "inference_tenant_requests",
            "Inference requests by tenant and final HTTP status.",
            ["model", "tenant", "status"],
            registry=r,
        )
        self.tenant_latency = Histogram(
            "inference_tenant_latency_seconds",
            "Time from request arrival to response, successful requests, by tenant.",
            ["model", "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tenant_compute = Counter(
            "inference_tenant_compute_seconds",
            "Backend seconds spent on a tenant's rows (its share of each batch it was in).",
            ["model", "tenant"],
            registry=r,
        )

    def count(self, model: str, status: int) -> None:
        """inference_requests{model, status} += 1, the labelled child looked up once per pair (a
        `labels()` call is a lock, a tuple and a dict lookup: under overload, on every 429)."""
        child = self._by_status.get((model, status))
        if child is None:
            child = self._by_status[(model, status)] = self.requests.labels(model, str(status))
        child.inc()
