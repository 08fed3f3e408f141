"""Helpers for packaging tests on a real control plane: kubectl/helm with the plane's env, and a
kubeconfig that authenticates only with a ServiceAccount token."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.integration.controlplane import ControlPlane
from tests.packaging.render import tools


@dataclass(frozen=True)
class Cluster:
    plane: ControlPlane

    def run(self, tool: str, *args: str | Path, stdin: str | None = None, check: bool = True) -> str:
        exe = tools().helm if tool == "helm" else tools().kubectl
        result = subprocess.run(
            [str(exe), *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.plane.env,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(map(str, args))[:300]} failed:\n{result.stderr[-4000:]}")
        return result.stdout if check else result.stdout + result.stderr

    def kubectl_full(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """kubectl as admin, returning the whole result (stderr carries API warnings)."""
        return subprocess.run(
            [str(tools().kubectl), *map(str, args)],
            capture_output=True,
            text=True,
            env=self.plane.env,
            check=False,
            timeout=300,
        )

    def kubectl(self, *args: str | Path, stdin: str | None = None, check: bool = True) -> str:
        return self.run("kubectl", *args, stdin=stdin, check=check)

    def helm(self, *args: str | Path, check: bool = True) -> str:
        return self.run("helm", *args, check=check)

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
        manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        self.kubectl("apply", "--server-side", "-f", "-", stdin=manifest)

    def get(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl("get", *args, "-o", "yaml"))

    def token_kubeconfig(self, namespace: str, service_account: str, path: Path) -> Path:
        """A kubeconfig holding only a fresh token of `service_account` (no client certificate)."""
        token = self.kubectl("create", "token", service_account, "-n", namespace, "--duration", "2h").strip()
        admin = yaml.safe_load(self.plane.kubeconfig.read_text())
        cluster = dict(admin["clusters"][0]["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "plane", "cluster": cluster}],
            "users": [{"name": service_account, "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "plane", "user": service_account}}],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def as_token(
        self, kubeconfig: Path, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl with nothing but the token kubeconfig."""
        return subprocess.run(
            [str(tools().kubectl), "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def can_i(self, kubeconfig: Path, verb: str, resource: str, namespace: str | None) -> bool:
        """A SelfSubjectAccessReview as the token; `resource` is `plural[.group][/subresource]`. Not
        `kubectl auth can-i`: it resolves the resource by discovery and answers no for a kind whose CRD
        is not installed here (KEDA's), while RBAC is what is asked."""
        name, _, subresource = resource.partition("/")
        plural, _, group = name.partition(".")
        attributes = {"verb": verb, "group": group, "resource": plural, "subresource": subresource}
        if namespace:
            attributes["namespace"] = namespace
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        result = self.as_token(kubeconfig, "create", "-f", "-", "-o", "json", stdin=json.dumps(review))
        assert result.returncode == 0, f"access review {verb} {resource}: {result.stderr}"
        return bool(json.loads(result.stdout)["status"].get("allowed"))
