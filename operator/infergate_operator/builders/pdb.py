"""PodDisruptionBudget `<name>`: at most one replica evicted at a time, when there is more than one."""

from __future__ import annotations

from typing import Any

from infergate_operator.context import BuildContext
from infergate_operator.spec import InferenceModelSpec


def wants_pdb(spec: InferenceModelSpec) -> bool:
    """A PDB only helps with more than one replica; with one it would block node drains for good."""
    if spec.autoscaling is not None:
        return spec.autoscaling.min_replicas > 1
    return spec.replicas > 1


def build_pdb(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": ctx.metadata(),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": ctx.selector_labels}},
    }
