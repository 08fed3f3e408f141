"""Input drift: per-input statistics of live requests, and a PSI score against a recorded baseline.

The hot path only keeps a reference to a served request's inputs (`observe`: one append, or a count when
the bounded queue is full). A task on the loop folds them in chunks into the current window (count, sum,
sum of squares, min, max, zeros, a histogram over the baseline's bins) and closes the window once it is
`windowSeconds` old and holds `minValues` values: then the gauges take the window's statistics and its
Population Stability Index against the baseline. Label values are the model's declared input names only
(at most MAX_INPUTS): bounded cardinality whatever the clients send.

Values: every element of a numeric tensor; for a BYTES tensor, each element's length in bytes (texts).
Zeros count padding for id and mask tensors.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .backends.base import Tensor
from .config import DriftConfig
from .metrics import Metrics

MAX_INPUTS = 16
DEFAULT_BINS = 10
FLOOR = 1e-4  # a bin empty on one side counts as this fraction, so PSI stays finite
FOLD_CHUNK = 256  # requests folded per step before yielding the loop
FORMAT = "infergate-input-baseline/v1"
STATS = ("mean", "std", "min", "max", "zero_fraction")
Floats = npt.NDArray[np.float64]


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the field."""


def values_of(arr: Tensor) -> Floats:
    """The values a tensor contributes: its elements, or each BYTES element's length."""
    if arr.dtype.kind in "OSU":
        return np.fromiter((len(x) for x in arr.ravel().tolist()), dtype=np.float64, count=arr.size)
    return np.asarray(arr, dtype=np.float64).ravel()


@dataclass(frozen=True)
class InputBaseline:
    edges: tuple[float, ...]
    """Inner bin edges, ascending: bin i holds values v with edges[i-1] < v <= edges[i]."""
    fractions: tuple[float, ...]
    """Fraction of the baseline's values in each bin (len(edges) + 1 of them)."""
    count: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "fractions": list(self.fractions),
            "count": self.count,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "zeroFraction": self.zero_fraction,
        }


@dataclass(frozen=True)
class Baseline:
    model: str
    inputs: Mapping[str, InputBaseline]

    def to_json_text(self) -> str:
        doc = {
            "format": FORMAT,
            "model": self.model,
            "inputs": {n: b.to_json() for n, b in sorted(self.inputs.items())},
        }
        return json.dumps(doc, sort_keys=True, indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BaselineError(f"drift.baselinePath {path}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise BaselineError(f"drift.baselinePath {path}: not JSON: {exc}") from None
        return cls.from_json(doc, str(path))

    @classmethod
    def from_json(cls, doc: Any, where: str = "baseline") -> Baseline:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BaselineError(f"{where}: format must be {FORMAT}")
        raw = doc.get("inputs")
        if not isinstance(raw, dict) or not raw or len(raw) > MAX_INPUTS:
            raise BaselineError(f"{where}: inputs must map 1 to {MAX_INPUTS} input names to their baselines")
        inputs = {}
        for name, b in raw.items():
            try:
                edges = tuple(float(e) for e in b["edges"])
                fractions = tuple(float(f) for f in b["fractions"])
                stats = [float(b[k]) for k in ("mean", "std", "min", "max", "zeroFraction")]
                count = int(b["count"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BaselineError(f"{where}: inputs.{name}: missing or bad field {exc}") from None
            if len(fractions) != len(edges) + 1 or list(edges) != sorted(set(edges)):
                raise BaselineError(f"{where}: inputs.{name}: edges must ascend, one fewer than fractions")
            if (
                not all(math.isfinite(v) for v in (*edges, *fractions, *stats))
                or abs(sum(fractions) - 1) > 1e-6
            ):
                raise BaselineError(f"{where}: inputs.{name}: fractions must be finite and sum to 1")
            inputs[str(name)] = InputBaseline(edges, fractions, count, *stats)
        return cls(str(doc.get("model", "")), inputs)


def _summary(values: Floats) -> tuple[float, float, float, float, float]:
    return (
        float(values.mean()),
        float(values.std()),
        float(values.min()),
        float(values.max()),
        float(np.count_nonzero(values == 0) / values.size),
    )


def _round(x: float) -> float:
    return float(f"{x:.9g}")  # same text on every platform numpy runs on: a byte-identical file


def record_baseline(
    model: str, samples: Mapping[str, Iterable[Tensor]], bins: int = DEFAULT_BINS
) -> Baseline:
    """A baseline from representative inputs: quantile bins (equal shares of the baseline's values, ties
    merged) and summary statistics per input. Deterministic: the same inputs give the same file."""
    if not 2 <= bins <= 100:
        raise BaselineError(f"bins must be 2..100, got {bins}")
    inputs = {}
    for name in sorted(samples)[:MAX_INPUTS]:
        arrays = [values_of(a) for a in samples[name]]
        values = np.concatenate(arrays) if arrays else np.empty(0)
        if values.size == 0:
            continue
        if not np.isfinite(values).all():
            raise BaselineError(f"input {name}: values must be finite")
        qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
        edges = tuple(sorted({_round(float(q)) for q in qs}))
        counts = np.bincount(
            np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1
        )
        fractions = [_round(float(c) / values.size) for c in counts]
        fractions[-1] = _round(1.0 - sum(fractions[:-1]))
        mean, std, lo, hi, zeros = (_round(v) for v in _summary(values))
        inputs[name] = InputBaseline(edges, tuple(fractions), int(values.size), mean, std, lo, hi, zeros)
    if not inputs:
        raise BaselineError("no input values to record a baseline from")
    return Baseline(model, inputs)


def psi(counts: npt.NDArray[np.int64], expected: Iterable[float]) -> float:
    """Population Stability Index of observed bin counts against expected fractions:
    sum((a - e) * ln(a / e)), each fraction floored at FLOOR. Under 0.1 is usually read as stable,
    over 0.25 as a significant shift."""
    a = np.maximum(counts / max(int(counts.sum()), 1), FLOOR)
    e = np.maximum(np.asarray(list(expected), dtype=np.float64), FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class _Window:
    count: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    zeros: int = 0
    bins: npt.NDArray[np.int64] | None = None

    def add(self, values: Floats, edges: Floats | None) -> None:
        if values.size == 0:
            return
        self.count += int(values.size)
        self.total += float(values.sum())
        self.squares += float(np.dot(values, values))
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        self.zeros += int(np.count_nonzero(values == 0))
        if edges is not None:
            idx = np.searchsorted(edges, values, side="left")
            found = np.bincount(idx, minlength=edges.size + 1)
            self.bins = found if self.bins is None else self.bins + found

    def stats(self) -> dict[str, float]:
        mean = self.total / self.count
        var = max(self.squares / self.count - mean * mean, 0.0)
        return {"mean": mean, "std": math.sqrt(var), "min": self.low, "max": self.high,
                "zero_fraction": self.zeros / self.count}  # fmt: skip


@dataclass
class DriftMonitor:
    """One per served model. `observe` is the only call on the request path."""

    model: str
    config: DriftConfig
    inputs: tuple[str, ...]
    """The declared input names tracked (at most MAX_INPUTS)."""
    metrics: Metrics
    baseline: Baseline | None = None
    clock: Callable[[], float] = time.monotonic
    skipped: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    """PSI of the last closed window per input (inputs with a baseline only)."""
    last_stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inputs = tuple(self.inputs[:MAX_INPUTS])
        self._tracked = frozenset(self.inputs)
        self._pending: list[Mapping[str, Tensor]] = []
        self._limit = self.config.max_pending_requests
        self._windows = {n: _Window() for n in self.inputs}
        self._edges = {
            n: np.asarray(self.baseline.inputs[n].edges, dtype=np.float64)
            for n in self.inputs
            if self.baseline is not None and n in self.baseline.inputs
        }
        self._opened = self.clock()
        m = self.metrics
        self._skipped = m.drift_skipped.labels(self.model)
        self._values = {n: m.input_values.labels(self.model, n) for n in self.inputs}

    def observe(self, inputs: Mapping[str, Tensor]) -> None:
        """Hot path: keep a reference for the next fold, or count it skipped when the queue is full."""
        if len(self._pending) < self._limit:
            self._pending.append(inputs)
        else:
            self.skipped += 1
            self._skipped.inc()

    def fold(self, limit: int = FOLD_CHUNK) -> int:
        """Fold up to `limit` queued requests into the window; returns how many."""
        batch, self._pending = self._pending[:limit], self._pending[limit:]
        if not batch:
            return 0
        for name in self.inputs:
            arrays = [req[name] for req in batch if name in req]
            if not arrays:
                continue
            if arrays[0].dtype.kind in "OSU":
                values = np.concatenate([values_of(a) for a in arrays])
            else:  # one concatenation of the raw rows, one conversion: most of the fold's cost is per call
                values = np.concatenate([a.ravel() for a in arrays]).astype(np.float64, copy=False)
            self._windows[name].add(values, self._edges.get(name))
            self._values[name].inc(values.size)
        return len(batch)

    def close_window(self) -> bool:
        """Publish and restart the window when it is old and full enough; whether it did."""
        now = self.clock()
        if now - self._opened < self.config.window_seconds:
            return False
        if not any(w.count >= self.config.min_values for w in self._windows.values()):
            return False
        for name, window in self._windows.items():
            if window.count < self.config.min_values:
                continue
            stats = window.stats()
            self.last_stats[name] = stats
            for stat in STATS:
                self.metrics.input_stat.labels(self.model, name, stat).set(stats[stat])
            if window.bins is not None and self.baseline is not None:
                score = psi(window.bins, self.baseline.inputs[name].fractions)
                self.scores[name] = score
                self.metrics.input_psi.labels(self.model, name).set(score)
            self._windows[name] = _Window()
        self._opened = now
        return True

    async def run(self, tick_s: float = 0.25) -> None:
        """Forever: fold what is queued in chunks (yielding the loop between them), close windows."""
        while True:
            await asyncio.sleep(tick_s)
            folded = self.fold()
            while folded:
                await asyncio.sleep(0)
                folded = self.fold()
            self.close_window()

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline is not None,
            "psi": dict(self.scores),
            "stats": {n: dict(s) for n, s in self.last_stats.items()},
            "skippedRequests": self.skipped,
        }


__all__ = [
    "DEFAULT_BINS",
    "FLOOR",
    "MAX_INPUTS",
    "Baseline",
    "BaselineError",
    "DriftMonitor",
    "InputBaseline",
    "psi",
    "record_baseline",
    "values_of",
]
