"""Prints an example InferenceModel placed on the local cluster's real node (DESIGN.md §10).

    python examples/on_real_node.py MANIFEST [--name N] [--perturb-golden]

The real node is labelled and tainted `infergate.io/node-kind=real` (NoSchedule), so only models that
ask for it land there; everything else in the example is applied as written. `--perturb-golden` shifts
one expected value of the first golden case far outside its tolerance: a copy that must never turn Ready.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import manifest_yaml

REAL_NODE_KEY = "infergate.io/node-kind"
REAL_NODE_VALUE = "real"


def on_real_node(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    scheduling = spec.setdefault("scheduling", {})
    scheduling.setdefault("nodeSelector", {})[REAL_NODE_KEY] = REAL_NODE_VALUE
    toleration = {"key": REAL_NODE_KEY, "operator": "Equal", "value": REAL_NODE_VALUE, "effect": "NoSchedule"}
    tolerations = scheduling.setdefault("tolerations", [])
    if toleration not in tolerations:
        tolerations.append(toleration)
    return doc


def perturb_golden(doc: dict[str, Any]) -> str:
    """Moves the first expected number of the first golden case by 1000; returns the case's name."""
    case = doc["spec"]["golden"]["cases"][0]
    tensor = next(iter(case["expected"].values()))
    tensor["data"][0] = float(tensor["data"][0]) + 1000.0
    return str(case["name"])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--name", help="metadata.name of the copy")
    parser.add_argument("--perturb-golden", action="store_true")
    args = parser.parse_args(argv)
    doc = on_real_node(yaml.safe_load(args.manifest.read_text(encoding="utf-8")))
    if args.name:
        doc["metadata"]["name"] = args.name
    if args.perturb_golden:
        perturb_golden(doc)
    manifest_yaml.dump(doc, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
