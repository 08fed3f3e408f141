"""Renders the chart and the kustomize overlays with the control plane's own helm and kubectl."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.integration.controlplane import bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "infergate"
MANIFESTS = REPO / "manifests"
OVERLAYS = ("cluster-wide", "single-namespace")
KUBE_VERSION = "v1.36.3"  # tools/controlplane/versions.env K8S_VERSION
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
DIGEST = "sha256:" + "0123456789abcdef" * 4

Doc = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path


@cache
def tools() -> Tools:
    """helm and kubectl built by tools/controlplane/build; fails (never skips) when they are missing."""
    found = bin_dir(dict(os.environ))
    helm, kubectl = found / "helm", found / "kubectl"
    missing = [str(p) for p in (helm, kubectl) if not p.exists()]
    if missing:
        raise AssertionError(f"missing {missing}: run `make controlplane` (tools/controlplane/build) first")
    return Tools(helm=helm, kubectl=kubectl)


def run(args: Iterable[str | Path], env: Mapping[str, str] | None = None, check: bool = True) -> str:
    argv = [str(a) for a in args]
    result = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=300, env=dict(env or os.environ)
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv[:4])}… exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def helm_template(
    values: Mapping[str, Any] | None = None,
    namespace: str = "infergate-system",
    release: str = "infergate",
    monitoring: bool = False,
    check: bool = True,
) -> str:
    """`helm template` of the chart with `values` (as a values file) and, optionally, the Prometheus
    Operator's API versions advertised."""
    args: list[str | Path] = [tools().helm, "template", release, CHART, "--namespace", namespace]
    args += ["--kube-version", KUBE_VERSION]
    for api in MONITORING_APIS if monitoring else ():
        args += ["--api-versions", api]
    values_file = None
    if values:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(dict(values), f)
            values_file = Path(f.name)
        args += ["--values", values_file]
    try:
        if not check:
            result = subprocess.run(
                [str(a) for a in args], capture_output=True, text=True, check=False, timeout=300
            )
            return result.stdout if result.returncode == 0 else "ERROR:" + result.stderr
        return run(args)
    finally:
        if values_file:
            values_file.unlink()


def kustomize(overlay: str) -> str:
    return run([tools().kubectl, "kustomize", MANIFESTS / "overlays" / overlay])


def docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def find(documents: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(documents: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(documents, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# Renders every test and the checkov scan cover: (label, values, monitoring APIs advertised).
CHART_CASES: tuple[tuple[str, dict[str, Any], bool], ...] = (
    ("defaults", {}, False),
    ("namespaced", {"watchNamespaces": ["infergate-models", "team-b"]}, False),
    (
        "production",
        {
            "image": {"digest": DIGEST},
            "serverImage": {"digest": DIGEST},
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
            "operator": {"replicas": 2},
            # The sweep mounts the hostPath: not in the operator's restricted namespace.
            "models": {
                "nodeCache": "hostPath:/var/lib/infergate/models",
                "nodeCacheSweep": {"namespace": "infergate-node-cache"},
            },
        },
        True,
    ),
)
