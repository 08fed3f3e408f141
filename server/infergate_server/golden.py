"""Golden cases: compare what the model produced with what a trusted run produced.

The comparison and the overall assessment are pure functions. Each case ends Passed, Failed (measured and
out of tolerance), Errored (could not be measured: the backend raised) or Inconclusive (nothing to compare).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends.base import Completion, Tensor
from .config import PromptCase, TensorCase, TensorData
from .datatypes import OIP_TO_NUMPY


class Outcome(enum.StrEnum):
    PASSED = "Passed"
    INCONCLUSIVE = "Inconclusive"
    FAILED = "Failed"
    ERRORED = "Errored"


_SEVERITY = {Outcome.PASSED: 0, Outcome.INCONCLUSIVE: 1, Outcome.FAILED: 2, Outcome.ERRORED: 3}


@dataclass(frozen=True)
class CaseResult:
    name: str
    outcome: Outcome
    message: str = ""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.outcome.value,
            "passed": self.outcome is Outcome.PASSED,
            "maxAbsError": self.max_abs_error,
            "maxRelError": self.max_rel_error,
            "message": self.message,
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class GoldenReport:
    digest: str | None
    checked_at: float  # wall-clock seconds since the epoch, for humans and status
    cases: tuple[CaseResult, ...] = field(default_factory=tuple)

    @property
    def outcome(self) -> Outcome:
        return assess(c.outcome for c in self.cases)

    def to_json(self) -> dict[str, Any]:
        abs_errs = [c.max_abs_error for c in self.cases if c.max_abs_error is not None]
        rel_errs = [c.max_rel_error for c in self.cases if c.max_rel_error is not None]
        return {
            "result": self.outcome.value,
            "passed": sum(c.outcome is Outcome.PASSED for c in self.cases),
            "failed": sum(c.outcome is not Outcome.PASSED for c in self.cases),
            "maxAbsError": max(abs_errs) if abs_errs else None,
            "maxRelError": max(rel_errs) if rel_errs else None,
            "digest": self.digest,
            "checkedAt": self.checked_at,
            "cases": [c.to_json() for c in self.cases],
        }


def assess(outcomes: Iterable[Outcome]) -> Outcome:
    """The worst outcome wins; no cases at all is Inconclusive (never Passed)."""
    worst: Outcome | None = None
    for o in outcomes:
        if worst is None or _SEVERITY[o] > _SEVERITY[worst]:
            worst = o
    return Outcome.INCONCLUSIVE if worst is None else worst


def tensor_of(t: TensorData) -> Tensor:
    """A golden tensor as numpy; BYTES become an object array of UTF-8 bytes."""
    dtype = OIP_TO_NUMPY.get(t.datatype)
    if dtype is None:
        raise ValueError(f"unknown datatype {t.datatype!r}")
    if t.datatype == "BYTES":
        flat = np.array(t.data, dtype=object).ravel()
        arr = np.empty(flat.size, dtype=object)
        arr[:] = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in flat]
        return arr.reshape(t.shape)
    return np.array(t.data, dtype=dtype).reshape(t.shape)


@dataclass(frozen=True)
class Comparison:
    """Actual outputs against expected ones, per output and overall (golden and shadow share it)."""

    problems: tuple[str, ...]
    compared: int
    max_abs_error: float
    max_rel_error: float
    abs_errors: Mapping[str, float]
    """Largest absolute error per numeric output compared."""


def compare_outputs(
    expected: Mapping[str, Tensor], actual: Mapping[str, Tensor], atol: float, rtol: float
) -> Comparison:
    """Every expected output must match: |actual - expected| <= atol + rtol * |expected|; BYTES exactly."""
    worst_abs = 0.0
    worst_rel = 0.0
    problems: list[str] = []
    per_output: dict[str, float] = {}
    compared = 0
    for name, want in expected.items():
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: not produced (outputs: {sorted(actual)})")
            continue
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{name}: shape {list(got.shape)} != expected {list(want.shape)}")
            continue
        if want.size == 0:
            continue
        compared += 1
        if want.dtype == object or got.dtype == object:
            if not np.array_equal(got, want):
                problems.append(f"{name}: BYTES differ")
            continue
        a = got.astype(np.float64)
        e = want.astype(np.float64)
        if not np.all(np.isfinite(a)):
            problems.append(f"{name}: non-finite values")
            worst_abs = math.inf
            per_output[name] = math.inf
            continue
        diff = np.abs(a - e)
        abs_err = float(diff.max())
        rel_err = float((diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)).max())
        per_output[name] = abs_err
        worst_abs = max(worst_abs, abs_err)
        worst_rel = max(worst_rel, rel_err)
        bad = diff > atol + rtol * np.abs(e)
        if bad.any():
            problems.append(
                f"{name}: {int(bad.sum())} of {e.size} values out of tolerance "
                f"(max abs {abs_err:.3g} > atol {atol:g} + rtol {rtol:g}·|expected|)"
            )
    return Comparison(tuple(problems), compared, worst_abs, worst_rel, per_output)


def compare_tensors(case: TensorCase, actual: Mapping[str, Tensor], seconds: float = 0.0) -> CaseResult:
    """Passed iff every expected output matches: |actual - expected| <= atol + rtol * |expected|."""
    expected = {name: tensor_of(data) for name, data in case.expected.items()}
    c = compare_outputs(expected, actual, case.atol, case.rtol)
    if c.problems:
        return CaseResult(
            case.name, Outcome.FAILED, "; ".join(c.problems), c.max_abs_error, c.max_rel_error, seconds
        )
    if c.compared == 0:
        return CaseResult(case.name, Outcome.INCONCLUSIVE, "no values to compare", None, None, seconds)
    return CaseResult(case.name, Outcome.PASSED, "", c.max_abs_error, c.max_rel_error, seconds)


def compare_completion(case: PromptCase, got: Completion, seconds: float = 0.0) -> CaseResult:
    """Token ids must start with expectedTokenIds; text must start with expectedText (greedy, fixed seed)."""
    problems: list[str] = []
    if case.expected_token_ids is not None:
        want = tuple(case.expected_token_ids)
        if got.token_ids[: len(want)] != want:
            problems.append(f"token ids {list(got.token_ids)} do not start with {list(want)}")
    if case.expected_text is not None and not got.text.startswith(case.expected_text):
        problems.append(f"text {got.text!r} does not start with {case.expected_text!r}")
    if problems:
        return CaseResult(case.name, Outcome.FAILED, "; ".join(problems), seconds=seconds)
    return CaseResult(case.name, Outcome.PASSED, seconds=seconds)


def errored(case: TensorCase | PromptCase, exc: BaseException, seconds: float = 0.0) -> CaseResult:
    return CaseResult(case.name, Outcome.ERRORED, f"{type(exc).__name__}: {exc}", seconds=seconds)
