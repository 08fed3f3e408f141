"""Starts and stops a dedicated local control plane for a test session (tools/controlplane/up|down)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
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
        # The real node's stop lets the kubelet stop its pods first (up to a minute on a loaded machine).
        subprocess.run([str(CONTROLPLANE / "down")], env=self.env, check=True, timeout=300)


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


def start(cluster: str, real_node: bool = False, autoscaling: bool = False) -> ControlPlane:
    """Brings up the cluster `cluster` with its own state; returns its kubeconfig and an env using it.
    The host has one real node (DESIGN.md §10): only the clusters that test real pods ask for it.
    `autoscaling`: metrics-server, KEDA and its HTTP add-on too (docs/autoscaling.md)."""
    env = dict(os.environ)
    env["INFERGATE_CLUSTER"] = cluster
    env["INFERGATE_REAL_NODES"] = "1" if real_node else "0"
    env["INFERGATE_AUTOSCALING"] = "1" if autoscaling else "0"
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


class PortHolder:
    """Holds host:port while the API server is down, so that no other process can take it meanwhile.

    Freeing the port for the outage let another local cluster, created in that window, pick it (kwokctl
    picks free ports at create time), and the restarted API server then failed to bind. The holder is a
    listening socket (a bound-only one does not stop a Go listener, which sets SO_REUSEADDR) that resets
    every connection at once, so clients see the server gone, as with a refused connection. It sets
    SO_REUSEPORT, and the API server is restarted with --permit-port-sharing, so the restarted server binds
    while the port is still held; the holder lets go once the server answers a TLS handshake.
    """

    def __init__(self, host: str, port: int, timeout_s: float = 30) -> None:
        self.address = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        deadline = time.monotonic() + timeout_s
        while True:  # the stopping server releases the port within moments: take it at once
            try:
                self.sock.bind(self.address)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refuse, daemon=True)
        self._thread.start()

    def _refuse(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST: the connection fails at once

    def release(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _flag(cmdline: list[str], name: str, default: str) -> str:
    prefix = f"--{name}="
    return next((arg.removeprefix(prefix) for arg in cmdline if arg.startswith(prefix)), default)


def _answers_tls(address: tuple[str, int]) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(address, timeout=1) as raw, context.wrap_socket(raw):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def apiserver_down(plane: ControlPlane) -> Iterator[tuple[str, int]]:
    """Stops kube-apiserver (SIGTERM, by its pid) and holds its port (PortHolder) for the duration of the
    block; then starts it again with the same command line (plus --permit-port-sharing), records the new
    pid where kwokctl (and `down`) look for it, and lets the port go once the new server answers."""
    pidfile = cluster_dir(plane) / "pids" / "kube-apiserver.pid"
    pid = int(pidfile.read_text().strip())
    cmdline = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    cwd = os.readlink(f"/proc/{pid}/cwd")
    log = cluster_dir(plane) / "logs" / "kube-apiserver.log"
    address = (_flag(cmdline, "bind-address", "127.0.0.1"), int(_flag(cmdline, "secure-port", "6443")))
    os.kill(pid, signal.SIGTERM)
    holder: PortHolder | None = None
    try:
        holder = PortHolder(*address)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield address
    finally:  # whatever happened meanwhile, the cluster gets its API server back
        restart = [a for a in cmdline if not a.startswith("--permit-port-sharing")]
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*restart, "--permit-port-sharing=true"],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + 60
        while not _answers_tls(address) and time.monotonic() < deadline:
            time.sleep(0.2)
        if holder is not None:
            holder.release()


def restart_apiserver_after(plane: ControlPlane, down_s: float) -> None:
    """kube-apiserver down for `down_s` seconds, its port held meanwhile (apiserver_down)."""
    with apiserver_down(plane):
        time.sleep(down_s)
