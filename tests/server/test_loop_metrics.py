"""loop_metrics: the same exposition as prometheus_client's Counter and Histogram for the same updates."""

from __future__ import annotations

import random

import pytest
from infergate_server.loop_metrics import LoopCounter, LoopHistogram
from infergate_server.metrics import LATENCY_BUCKETS
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


def exposition(registry: CollectorRegistry) -> list[str]:
    """Samples without the `_created` series (timestamps; the histogram's is not kept)."""
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_the_exposition_matches_prometheus_clients_own() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counters = (
        LoopCounter("inference_requests", "Requests.", ["model", "status"], registry=ours),
        Counter("inference_requests", "Requests.", ["model", "status"], registry=theirs),
    )
    histograms = (
        LoopHistogram("inference_latency_seconds", "Latency.", ["model"], LATENCY_BUCKETS, registry=ours),
        Histogram(
            "inference_latency_seconds", "Latency.", ["model"], buckets=LATENCY_BUCKETS, registry=theirs
        ),
    )
    rng = random.Random(7)
    # values on bucket bounds too: `le` is inclusive
    values = [
        rng.choice([*LATENCY_BUCKETS, 0.0, 1e-6, 31.0, 100.0]) * rng.choice([1, 1, 0.7]) for _ in range(500)
    ]
    for v in values:
        for h in histograms:
            h.labels("m").observe(v)
        for c in counters:
            c.labels("m", 200 if v < 1 else "504").inc()
    for c in counters:
        c.labels("other", "429").inc(3)
    assert exposition(ours) == exposition(theirs)


def test_wrong_label_counts_and_negative_increments_are_refused() -> None:
    counter = LoopCounter("c", "C.", ["model", "status"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("m")
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("m", "200").inc(-1)
