"""Input drift's pure parts: PSI, baselines, the bounded fold queue and windows (server/drift.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from infergate_server.config import DriftConfig
from infergate_server.drift import Baseline, BaselineError, DriftMonitor, psi, record_baseline, values_of
from infergate_server.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def normal(shift: float, n: int = 4000, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, 4)).astype(np.float32)


def test_psi_is_zero_for_the_baseline_and_grows_with_the_shift() -> None:
    base = record_baseline("m", {"x": [normal(0.0)]})
    edges = np.asarray(base.inputs["x"].edges)
    fractions = base.inputs["x"].fractions

    def score(values: np.ndarray) -> float:
        counts = np.bincount(np.searchsorted(edges, values.ravel(), side="left"), minlength=edges.size + 1)
        return psi(counts, fractions)

    assert score(normal(0.0)) == pytest.approx(0.0, abs=1e-9)
    small, large = score(normal(0.25, seed=2)), score(normal(1.0, seed=3))
    assert 0.0 < small < 0.2 < large


def test_bytes_inputs_count_their_lengths() -> None:
    texts = np.array([b"ab", b"", b"hello"], dtype=object)
    assert values_of(texts).tolist() == [2.0, 0.0, 5.0]


def test_baseline_round_trips_and_bad_files_name_the_field() -> None:
    base = record_baseline("m", {"x": [normal(0.0)]}, bins=5)
    text = base.to_json_text()
    assert Baseline.from_json(json.loads(text)).to_json_text() == text
    with pytest.raises(BaselineError, match="format must be"):
        Baseline.from_json({"inputs": {}})
    broken = json.loads(text)
    broken["inputs"]["x"]["fractions"] = [0.5, 0.5]
    with pytest.raises(BaselineError, match=r"inputs\.x: edges must ascend"):
        Baseline.from_json(broken)
    with pytest.raises(BaselineError, match="values must be finite"):
        record_baseline("m", {"x": [np.array([1.0, np.nan])]})


def test_the_fold_queue_is_bounded_and_counts_what_it_skips() -> None:
    config = DriftConfig(window_seconds=1, min_values=8, max_pending_requests=2)
    monitor = DriftMonitor("m", config, ("x",), Metrics())
    row = {"x": np.ones((1, 4), dtype=np.float32)}
    for _ in range(5):
        monitor.observe(row)
    assert monitor.skipped == 3
    assert monitor.fold() == 2
    assert monitor.fold() == 0


def test_a_window_closes_when_old_and_full_enough() -> None:
    clock = Clock()
    base = record_baseline("m", {"x": [normal(0.0)]})
    config = DriftConfig(window_seconds=10, min_values=100, max_pending_requests=100)
    monitor = DriftMonitor("m", config, ("x", "y"), Metrics(), base, clock)
    monitor.observe({"x": normal(3.0, n=50)})
    monitor.fold()
    assert not monitor.close_window(), "too young"
    clock.now = 11
    assert monitor.close_window()
    assert monitor.scores["x"] > 1.0
    assert monitor.last_stats["x"]["mean"] == pytest.approx(3.0, abs=0.2)
    assert "y" not in monitor.scores, "no values, no score"
    clock.now = 30
    assert not monitor.close_window(), "an empty window publishes nothing"
