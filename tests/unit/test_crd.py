"""The CRD rendered from spec.py: checked-in copy current, structural, documented, CEL where promised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infergate_operator import crd


def _version() -> dict[str, Any]:
    version: dict[str, Any] = crd.render()["spec"]["versions"][0]
    return version


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_checked_in_crd_matches_the_render() -> None:
    assert crd.drift(crd.render_yaml()) == [], "run `make crd` and commit crds/"


def test_crds_folder_ships_kopf_peering_crds_like_the_chart() -> None:
    """`kubectl apply -f crds/` alone gives the operator its peering CRDs (DESIGN §5), as the chart has."""
    shipped = crd.TARGETS[0] / "kopf.dev_peerings.yaml"
    for copy in crd.TARGETS[1:]:
        assert (copy / shipped.name).read_text() == shipped.read_text(), f"{copy} differs from crds/"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    (tmp_path / crd.FILENAME).write_text("stale\n")
    diffs = crd.drift(crd.render_yaml(), (tmp_path,))
    assert len(diffs) == 1
    assert "-stale" in diffs[0]
    assert crd.drift(crd.render_yaml(), (tmp_path / "missing",)) != []
    assert crd.main(["--check"]) == 0


def test_names_and_subresources() -> None:
    rendered = crd.render()
    assert rendered["metadata"]["name"] == "inferencemodels.serving.infergate.io"
    names = rendered["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "InferenceModel",
        "inferencemodels",
        ["igm"],
    )
    assert "infergate" in names["categories"]
    version = _version()
    assert version["name"] == "v1alpha1"
    assert version["served"]
    assert version["storage"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
    }


def test_printer_columns() -> None:
    columns = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert columns["Backend"] == ".spec.runtime.backend"
    assert columns["Ready"] == ".status.readySummary"
    assert columns["Phase"] == ".status.phase"
    assert "GoldenPassed" in columns["Golden"]
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not {"$ref", "$defs", "title"} & set(node), path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        elif not node.get("x-kubernetes-preserve-unknown-fields"):
            assert "type" in node, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_every_field_is_documented() -> None:
    for path, node in _walk(_schema()["properties"]["spec"], ".spec"):
        if not path.endswith("[]") and not path.endswith("{}"):
            assert node.get("description"), path
    for path, node in _walk(_schema()["properties"]["status"], ".status"):
        if not path.endswith("[]") and not path.endswith("{}"):
            assert node.get("description"), path


def test_unknown_fields_preserved_only_where_needed() -> None:
    preserved = {path for path, node in _walk(_schema()) if node.get("x-kubernetes-preserve-unknown-fields")}
    assert preserved == {
        ".spec.runtime.args",
        ".spec.golden.cases[].inputs{}.data[]",
        ".spec.golden.cases[].expected{}.data[]",
    }


def test_optional_fields_are_nullable() -> None:
    props = _schema()["properties"]["spec"]["properties"]
    assert props["autoscaling"]["nullable"] is True
    assert props["model"]["properties"]["sha256"]["nullable"] is True
    assert "nullable" not in props["model"]["properties"]["uri"]
    assert set(_schema()["properties"]["spec"]["required"]) == {"model", "runtime"}


def _rules() -> dict[str, list[str]]:
    return {
        path: [r["rule"] for r in node["x-kubernetes-validations"]]
        for path, node in _walk(_schema())
        if "x-kubernetes-validations" in node
    }


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (".spec.autoscaling", "self.minReplicas <= self.maxReplicas"),
        (".spec.hardware.gpu", "self.count > 0"),
        (".spec.model", "[0-9a-f]{64}"),
        (".spec.model", "(pvc|https|s3|hf|oci)://"),
        (".spec.model", "has(self.sha256) || self.uri.matches('^hf://"),
        (".spec.rollout", "self.strategy == 'Canary'"),
        (".spec.golden", "has(self.cases) != has(self.configMapRef)"),
        (".spec.golden.cases[]", "has(self.inputs) != has(self.prompt)"),
        ("", "self.metadata.name"),
    ],
)
def test_cel_rules(path: str, fragment: str) -> None:
    assert any(fragment in rule for rule in _rules()[path]), _rules().get(path)


def test_cel_rules_carry_messages_and_field_paths() -> None:
    for path, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], path
            if path:
                assert rule["fieldPath"].startswith("."), path


def test_strings_under_cel_rules_are_bounded() -> None:
    """The API server estimates CEL cost from maxLength/maxItems; unbounded inputs get a rule refused."""
    for path, node in _walk(_schema()):
        if "x-kubernetes-validations" not in node or not path:
            continue
        for name, prop in node.get("properties", {}).items():
            if prop.get("type") == "string" and "enum" not in prop:
                assert "maxLength" in prop, f"{path}.{name}"
