"""Starts and stops a dedicated local control plane for a test session (tools/controlplane/up|down)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTROLPLANE = REPO / "tools" / "controlplane"


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    env: dict[str, str]

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout + result.stderr if not check else result.stdout

    def down(self) -> None:
        subprocess.run([str(CONTROLPLANE / "down")], env=self.env, check=True, timeout=120)


def controlplane_path(env: dict[str, str], variable: str) -> Path:
    """A path that tools/controlplane/lib.sh computes for `env` (CP_BIN, CP_HOME, CP_STATE)."""
    out = subprocess.run(
        ["bash", "-c", f"source {CONTROLPLANE / 'lib.sh'} && echo ${variable}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return Path(out.stdout.strip())


def bin_dir(env: dict[str, str]) -> Path:
    return controlplane_path(env, "CP_BIN")


def start(cluster: str, real_node: bool = False) -> ControlPlane:
    """Brings up the cluster `cluster` with its own state; returns its kubeconfig and an env using it.
    The host has one real node (DESIGN.md §10): only the clusters that test real pods ask for it."""
    env = dict(os.environ)
    env["INFERGATE_CLUSTER"] = cluster
    env["INFERGATE_REAL_NODES"] = "1" if real_node else "0"
    result = subprocess.run(
        [str(CONTROLPLANE / "up")], env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        subprocess.run([str(CONTROLPLANE / "down")], env=env, check=False, timeout=120)
        raise RuntimeError(f"tools/controlplane/up failed:\n{result.stderr[-4000:]}")
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("KUBECONFIG="), last
    kubeconfig = Path(last.removeprefix("KUBECONFIG="))
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{bin_dir(env)}{os.pathsep}{env['PATH']}"
    return ControlPlane(kubeconfig=kubeconfig, env=env)


PEERING = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {name: infergate}\n"


def install_crds(plane: ControlPlane) -> None:
    """The InferenceModel CRD, kopf's peering CRDs and the operator's ClusterKopfPeering object."""
    crds = (
        "-f",
        str(REPO / "crds"),
        "-f",
        str(REPO / "charts" / "infergate" / "crds" / "kopf.dev_peerings.yaml"),
    )
    plane.kubectl("apply", "--server-side", *crds)
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
    plane.kubectl("apply", "-f", "-", stdin=PEERING)


def cluster_dir(plane: ControlPlane) -> Path:
    return plane.kubeconfig.parent


def restart_apiserver_after(plane: ControlPlane, down_s: float) -> None:
    """Stops kube-apiserver (SIGTERM, by its pid), keeps it down `down_s` seconds, starts it again with
    the same command line, and records the new pid where kwokctl (and `down`) look for it."""
    pidfile = cluster_dir(plane) / "pids" / "kube-apiserver.pid"
    pid = int(pidfile.read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    cwd = os.readlink(f"/proc/{pid}/cwd")
    log = cluster_dir(plane) / "logs" / "kube-apiserver.log"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(down_s)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [arg.decode() for arg in cmdline],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.write_text(str(process.pid))
