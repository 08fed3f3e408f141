"""NetworkPolicy `<name>` (opt-in, spec.networkPolicy): only the listed peers reach the model's pods."""

from __future__ import annotations

from typing import Any

from infergate_operator.builders.configmap import CONTAINER_PORT
from infergate_operator.context import BuildContext
from infergate_operator.spec import InferenceModelSpec


def wants_network_policy(spec: InferenceModelSpec) -> bool:
    return spec.network_policy is not None


def build_network_policy(spec: InferenceModelSpec, ctx: BuildContext) -> dict[str, Any]:
    assert spec.network_policy is not None
    peers = []
    for peer in spec.network_policy.allow_from:
        entry: dict[str, Any] = {}
        if peer.namespace_selector is not None:
            entry["namespaceSelector"] = {"matchLabels": dict(peer.namespace_selector)}
        if peer.pod_selector is not None:
            entry["podSelector"] = {"matchLabels": dict(peer.pod_selector)}
        peers.append(entry or {"podSelector": {}})  # no selector at all: the model's own namespace
    ports = [{"protocol": "TCP", "port": CONTAINER_PORT}]
    if spec.runtime.backend == "vllm":
        ports.append({"protocol": "TCP", "port": ctx.settings.vllm_openai_port})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": ctx.metadata(),
        "spec": {
            "podSelector": {"matchLabels": ctx.selector_labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": ports}],
        },
    }
