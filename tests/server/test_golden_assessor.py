import math

import numpy as np
from infergate_server.backends.base import Completion
from infergate_server.config import PromptCase, TensorCase
from infergate_server.golden import Outcome, assess, compare_completion, compare_tensors


def _case(data: list[float], atol: float = 1e-3, rtol: float = 0.0) -> TensorCase:
    return TensorCase.model_validate(
        {
            "name": "c",
            "inputs": {},
            "expected": {"y": {"shape": [1, len(data)], "datatype": "FP32", "data": data}},
            "atol": atol,
            "rtol": rtol,
        }
    )


def test_within_tolerance_passes_and_reports_errors() -> None:
    r = compare_tensors(_case([1.0, 2.0]), {"y": np.array([[1.0005, 2.0]], dtype=np.float32)})
    assert r.outcome is Outcome.PASSED
    assert r.max_abs_error is not None
    assert math.isclose(r.max_abs_error, 0.0005, rel_tol=1e-3)
    assert r.max_rel_error is not None
    assert r.max_rel_error > 0


def test_out_of_tolerance_fails_with_the_tensor_named() -> None:
    r = compare_tensors(_case([1.0, 2.0]), {"y": np.array([[1.0, 2.1]], dtype=np.float32)})
    assert r.outcome is Outcome.FAILED
    assert "y: 1 of 2 values out of tolerance" in r.message


def test_rtol_scales_with_expected_magnitude() -> None:
    r = compare_tensors(_case([1000.0], atol=0.0, rtol=1e-3), {"y": np.array([[1000.5]], dtype=np.float32)})
    assert r.outcome is Outcome.PASSED


def test_shape_mismatch_and_missing_output_fail() -> None:
    assert compare_tensors(_case([1.0]), {"y": np.zeros((2, 1), np.float32)}).outcome is Outcome.FAILED
    assert "not produced" in compare_tensors(_case([1.0]), {"z": np.zeros((1, 1), np.float32)}).message


def test_nan_never_passes() -> None:
    assert compare_tensors(_case([1.0]), {"y": np.array([[np.nan]], np.float32)}).outcome is Outcome.FAILED


def test_nothing_to_compare_is_inconclusive() -> None:
    case = TensorCase.model_validate({"name": "c", "inputs": {}, "expected": {}})
    assert compare_tensors(case, {}).outcome is Outcome.INCONCLUSIVE


def test_worst_outcome_wins_and_empty_is_never_passed() -> None:
    assert assess([]) is Outcome.INCONCLUSIVE
    assert assess([Outcome.PASSED, Outcome.PASSED]) is Outcome.PASSED
    assert assess([Outcome.PASSED, Outcome.INCONCLUSIVE]) is Outcome.INCONCLUSIVE
    assert assess([Outcome.FAILED, Outcome.INCONCLUSIVE]) is Outcome.FAILED
    assert assess([Outcome.FAILED, Outcome.ERRORED, Outcome.PASSED]) is Outcome.ERRORED


def test_completion_compares_token_id_prefix_and_text_prefix() -> None:
    case = PromptCase(
        name="p", prompt="The capital of France is", expected_text=" Paris", expected_token_ids=[3681]
    )
    assert compare_completion(case, Completion(" Paris. It", (3681, 30))).outcome is Outcome.PASSED
    bad = compare_completion(case, Completion(" Lyon", (999,)))
    assert bad.outcome is Outcome.FAILED
    assert "token ids" in bad.message
    assert "text" in bad.message
