"""What the real node may touch on the host, read in one snapshot: iptables rules and chains, network
links and addresses, mounts, the sysctls the kubelet and kube-proxy are known to write, cgroups."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Where kubelets, containerd, CNI and buildah put things by default; the project's own go elsewhere.
DEFAULT_PATHS = (
    "/opt/containerd", "/var/lib/containerd", "/run/containerd", "/var/lib/kubelet", "/etc/cni",
    "/var/lib/cni", "/run/netns", "/var/run/netns", "/var/lib/containers", "/etc/kubernetes",
)  # fmt: skip
COUNTERS = re.compile(r"\[\d+:\d+\]")


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    return result.stdout


def iptables() -> list[str]:
    rules: list[str] = []
    for command in ("iptables-save", "ip6tables-save"):
        for line in _run(command).splitlines():
            if line.startswith("#"):
                continue
            rules.append(f"{command}: {COUNTERS.sub('', line).strip()}")
    return sorted(rules)


def links() -> list[str]:
    return sorted(line.split("@")[0].split(":")[1].strip() for line in _run("ip", "-o", "link").splitlines())


def addresses() -> list[str]:
    return sorted(" ".join(line.split()[1:4]) for line in _run("ip", "-o", "addr").splitlines())


def mounts() -> list[str]:
    return sorted(" ".join(line.split()[:3]) for line in Path("/proc/mounts").read_text().splitlines())


def sysctls() -> dict[str, str]:
    values: dict[str, str] = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key
        values[key] = path.read_text().strip() if path.exists() else "-"
    for path in sorted(Path("/proc/sys/net/ipv4/conf").glob("*/forwarding")):
        values[str(path.relative_to("/proc/sys"))] = path.read_text().strip()
    return values


def cgroups() -> list[str]:
    """Every cgroup folder three levels deep in each hierarchy (pods sit at root/kubepods/<qos>/<pod>)."""
    found: list[str] = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if not hierarchy.is_dir():
            continue
        for path in hierarchy.glob("*"):
            if path.is_dir():
                found.append(str(path))
                found.extend(str(p) for p in path.glob("*/*") if p.is_dir())
    return sorted(found)


def paths() -> list[str]:
    return [path for path in DEFAULT_PATHS if Path(path).exists()]


def snapshot() -> dict[str, object]:
    return {
        "paths": paths(),
        "iptables": iptables(),
        "links": links(),
        "addresses": addresses(),
        "mounts": mounts(),
        "sysctls": sysctls(),
        "cgroups": cgroups(),
    }


def differences(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """Per part, what appeared and what disappeared."""
    diff: dict[str, object] = {}
    for part, old in before.items():
        new = after[part]
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            keys = old.keys() | new.keys()
            diff[part] = {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}
        else:
            assert isinstance(old, list)
            assert isinstance(new, list)
            diff[part] = {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new))}
    return diff
