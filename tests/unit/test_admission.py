"""The signed-models admission policy: one source (admission.py), copies in the kustomize base and chart."""

from __future__ import annotations

from pathlib import Path

import yaml
from infergate_operator import admission

REPO = Path(__file__).resolve().parents[2]


def test_kustomize_base_carries_the_built_policy_and_binding() -> None:
    docs = list(yaml.safe_load_all((REPO / "manifests" / "base" / "admission-policy.yaml").read_text()))
    assert docs == [admission.build_policy(), admission.build_binding()]


def test_every_refusal_names_its_field() -> None:
    for v in admission.build_policy()["spec"]["validations"]:
        assert v["message"].startswith(("spec.model.", "spec.runtime.tokenizer.")), v


def test_the_cluster_wide_binding_has_no_namespace_selector() -> None:
    assert "matchResources" not in admission.build_binding(every_namespace=True)["spec"]
    selector = admission.build_binding()["spec"]["matchResources"]["namespaceSelector"]
    assert selector == {"matchLabels": {admission.REQUIRE_LABEL: "true"}}
