"""Service `<name>`: OIP v2, health and metrics on spec.service.port; vLLM's OpenAI port too."""

from __future__ import annotations

from typing import Any

from infergate_operator.context import LABEL_SERVICE, BuildContext
from infergate_operator.spec import InferenceModelSpec


def service_ports(spec: InferenceModelSpec, ctx: BuildContext) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}
    ]
    if spec.runtime.backend == "vllm":
        port = ctx.settings.vllm_openai_port
        ports.append({"name": "openai", "port": port, "targetPort": "openai", "protocol": "TCP"})
    return ports


def build_service(spec: InferenceModelSpec, ctx: BuildContext, name: str | None = None) -> dict[str, Any]:
    """The Service; `name` lets the canary builder make `<name>-canary` / `<name>-stable` alike."""
    name = name or ctx.service_name
    metadata = ctx.metadata(name)
    metadata["labels"][LABEL_SERVICE] = name  # lets the ServiceMonitor pick this Service and no other
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": ctx.selector_labels,
            "ports": service_ports(spec, ctx),
        },
    }
