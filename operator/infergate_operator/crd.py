"""Renders the InferenceModel CustomResourceDefinition from spec.py (pure), and checks crds/ for drift.

`python -m infergate_operator.crd` writes crds/ (and the chart's and kustomize base's copies where those
folders exist); `--check` exits 1 with a diff when any of those copies differs from the render.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from infergate_operator.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InferenceModelSpec,
    InferenceModelStatus,
)

FILENAME = f"{GROUP}_{PLURAL}.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]
TARGETS = (
    REPO_ROOT / "crds",
    REPO_ROOT / "charts" / "infergate" / "crds",
    REPO_ROOT / "manifests" / "base" / "crds",
)
HEADER = "# Generated from operator/infergate_operator/spec.py by `make crd`; do not edit.\n"

# Names of children: `<name>-canary` / `<name>-stable` Services must stay DNS-1035 labels (≤ 63).
MAX_NAME_LENGTH = 56
NAME_RULES = [
    {
        "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        "message": f"metadata.name: at most {MAX_NAME_LENGTH} characters (children add suffixes)",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name: must be a DNS-1035 label (it names the Service)",
    },
]

PRINTER_COLUMNS = [
    {"name": "Backend", "type": "string", "jsonPath": ".spec.runtime.backend"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.readySummary"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Golden", "type": "string", "jsonPath": '.status.conditions[?(@.type=="GoldenPassed")].status'},
    {
        "name": "Runtime",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="RuntimeMatchesSpec")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # Shown without -o wide: it says why a model is not Ready (e.g. the failing golden case and pod).
    {"name": "Message", "type": "string", "jsonPath": ".status.message"},
]

_DROP = {"title", "additionalProperties"}


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null"


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One pydantic JSON-schema node → one structural OpenAPI v3 node (refs inlined, nullables marked)."""
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        target.update(node)  # the field's own description/default win over the class docstring
        return _structural(target, defs)
    out: dict[str, Any] = {}
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        options = node.pop("anyOf")
        non_null = [o for o in options if not _is_null(o)]
        if len(non_null) != 1:
            raise ValueError(f"unions other than Optional are not structural: {options}")
        merged = _structural(non_null[0], defs)
        rest = _structural(node, defs)
        own, general = rest.get("description"), merged.get("description")
        merged.update(rest)
        if own and general and general not in own:
            merged["description"] = f"{own} {general}"
        if len(non_null) != len(options):
            merged["nullable"] = True
        return merged
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "description":
            out[key] = " ".join(value.split())
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs) if value else {"x-kubernetes-preserve-unknown-fields": True}
        else:
            out[key] = value
    if node.get("type") == "object" and "properties" not in node:
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = _structural(extra, defs)
        elif extra is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of a pydantic model, by alias, with every `$defs` entry inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_defaults(value) for key, value in node.items() if key != "default"}
    if isinstance(node, list):
        return [_without_defaults(item) for item in node]
    return node


def render() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    spec = openapi_schema(InferenceModelSpec)
    # The operator writes the whole status; server-side defaults there would make a read differ from
    # the write and turn "write only when changed" into a write on every pass.
    status = _without_defaults(openapi_schema(InferenceModelStatus))
    root = {
        "type": "object",
        "description": "InferenceModel serves a verified model artifact behind golden-gated readiness.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": NAME_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "infergate"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["igm"],
                "categories": ["infergate"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def render_yaml() -> str:
    """The CRD as the YAML text checked into crds/."""
    return HEADER + yaml.safe_dump(render(), sort_keys=False, width=120, allow_unicode=True)


def drift(text: str, targets: tuple[Path, ...] = TARGETS) -> list[str]:
    """Unified diffs of every existing checked-in copy (crds/ always counts) that differs from `text`."""
    diffs = []
    for index, folder in enumerate(targets):
        path = folder / FILENAME
        if index > 0 and not folder.exists():
            continue
        current = path.read_text() if path.exists() else ""
        if current != text:
            lines = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "rendered"
            )
            diffs.append("".join(lines))
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate_operator.crd", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if crds/ drifted")
    args = parser.parse_args(argv)
    text = render_yaml()
    if args.check:
        diffs = drift(text)
        for diff in diffs:
            sys.stdout.write(diff)
        if diffs:
            sys.stderr.write("CRD drift: run `make crd` and commit the result\n")
        return 1 if diffs else 0
    for index, folder in enumerate(TARGETS):
        if index == 0 or folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / FILENAME).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["API_VERSION", "FILENAME", "drift", "main", "openapi_schema", "render", "render_yaml"]
