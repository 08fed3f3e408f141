"""Every invalid spec is refused with an error naming its field; valid fixtures pass."""

from __future__ import annotations

from typing import Any

import pytest
from infergate_operator.validation import check_spec, parse_golden_cases, parse_quantity

from tests.unit.igm import load_fixture, make_model, merge_patch

INVALID = load_fixture("invalid.yaml")


@pytest.mark.parametrize("case", INVALID["cases"], ids=[c["name"] for c in INVALID["cases"]])
def test_invalid_spec_names_its_field(case: dict[str, Any]) -> None:
    result = check_spec(merge_patch(INVALID["base"], case["patch"]))
    assert not result.ok
    assert any(error.startswith(case["field"] + ":") for error in result.errors), result.errors
    if case["layer"] == "operator":
        assert result.spec is not None  # the API server accepts it; only the operator's checks refuse it


def test_invalid_fixture_covers_enough_cases() -> None:
    assert len(INVALID["cases"]) >= 30
    assert len({c["name"] for c in INVALID["cases"]}) == len(INVALID["cases"])


def test_base_of_invalid_cases_is_valid() -> None:
    assert check_spec(INVALID["base"]).ok


@pytest.mark.parametrize(
    "model",
    [
        make_model(),
        make_model().gpus(2).cpu("500m").memory("8Gi").autoscaling(1, 4).golden_tensor(),
        make_model().llm().golden_llm(),
        make_model().golden_ref("golden-cm"),
        make_model().uri("oci://registry.example/m@sha256:" + "a" * 64, sha256=None),
        make_model().uri("pvc://claim/dir/model.onnx"),
        make_model().backend("tensorrt", "tensorrt-engine").gpus(1),
        make_model().backend("transformers", "hf-transformers"),
    ],
)
def test_valid_specs_pass(model: Any) -> None:
    result = check_spec(model.raw)
    assert result.ok, result.errors


def test_llm_fixture_is_valid() -> None:
    assert check_spec(load_fixture("llm.yaml")["spec"]).ok


def test_design_example_is_valid() -> None:
    assert check_spec(load_fixture("sentiment.yaml")["spec"]).ok


def test_errors_from_several_fields_are_all_reported() -> None:
    raw = merge_patch(INVALID["base"], {"replicas": -1, "service": {"port": 0}, "bogus": True})
    fields = sorted(e.split(":")[0] for e in check_spec(raw).errors)
    assert fields == ["spec.bogus", "spec.replicas", "spec.service.port"]


def test_cross_field_error_reads_like_the_cel_message() -> None:
    raw = merge_patch(INVALID["base"], {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}})
    assert check_spec(raw).errors == ("spec.autoscaling.minReplicas: must be ≤ maxReplicas",)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2.0),
        ("500m", 0.5),
        ("8Gi", 8 * 2.0**30),
        ("1k", 1000.0),
        ("1e3", 1000.0),
        ("0.5", 0.5),
        ("+1M", 1e6),
    ],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["two", "8GB", "", "1.2.3", "Gi"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


def test_golden_configmap_cases() -> None:
    cases, errors = parse_golden_cases("- {name: a, prompt: hi, expectedText: ' there'}\n")
    assert errors == []
    assert cases[0].name == "a"
    _, errors = parse_golden_cases("- {name: a, prompt: hi}\n")
    assert errors == [
        "spec.golden.configMapRef[0].expectedText: "
        "an LLM case needs exactly one of expectedText or expectedTokenIds"
    ]
    _, errors = parse_golden_cases("{not: [closed")
    assert errors[0].startswith("spec.golden.configMapRef: not valid YAML")


def test_referenced_cases_are_checked_against_the_backend() -> None:
    model = make_model().golden_ref("cm")
    cases, _ = parse_golden_cases("- {name: a, prompt: hi, expectedText: x}\n")
    errors = check_spec(model.raw, golden_cases=cases).errors
    assert [e.split(":")[0] for e in errors] == ["spec.golden.configMapRef[0].prompt"]


def test_large_inline_golden_sets_go_to_a_configmap() -> None:
    model = make_model().patch(
        {
            "golden": {
                "cases": [
                    {
                        "name": "big",
                        "inputs": {"x": {"shape": [40000], "datatype": "FP32", "data": [0.125] * 40000}},
                        "expected": {"y": {"shape": [1], "datatype": "FP32", "data": [1.0]}},
                    }
                ]
            }
        }
    )
    assert [e.split(":")[0] for e in check_spec(model.raw).errors] == ["spec.golden.cases"]
