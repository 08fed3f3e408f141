"""The cluster the e2e scenarios act on, and how they reach it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import yaml

from tests.packaging.render import tools


@dataclass(frozen=True)
class Target:
    kind: str  # "controlplane" or "kind"
    namespace: str
    env: dict[str, str]

    @property
    def serves_http(self) -> bool:
        """Whether model pods really run (kind) rather than being simulated (kwok)."""
        return self.kind == "kind"

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [str(tools().kubectl), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)[:300]} failed:\n{result.stderr[-3000:]}")
        return result.stdout if check else result.stdout + result.stderr

    def get(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl("get", *args, "-o", "yaml"))
