"""Real-node benchmark: what it costs to run the server image in real pods on this machine.

Prints, from one run on a cluster of its own: the real node's start (first, with a new image store,
then warm after a node-down), the image builds (the last full build each variant recorded, and this
run's build, a no-op when nothing changed) and imports into a fresh node, apply -> Ready on the real
node for the tiny and MiniLM examples with each startup phase read from the pod's own /metrics, and
the node's idle memory. Goals: node ready <= 10 s warm; tiny apply -> Ready <= 5 s; MiniLM <= 10 s.

Usage: .venv/bin/python bench/realnode.py [--variants cpu vllm]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pod_timeline import PodTimeline  # noqa: E402
from bench.table import print_table  # noqa: E402
from tests.integration.controlplane import CONTROLPLANE, ControlPlane, controlplane_path, start  # noqa: E402
from tests.integration.models import Models, models_pvc  # noqa: E402
from tests.integration.operator_process import OperatorProcess  # noqa: E402
from tests.realnode.realnode import IMAGE, pods, real_example, stage_models  # noqa: E402

PHASES = ("fetch", "verify", "load", "warmup", "golden")
# (name, example): the first pod of the image on a freshly imported node pays for reading its files from
# disk; "tiny-again" is the same example applied once the node has run the image.
EXAMPLES = (("tiny", "tiny-onnx"), ("minilm-l3", "minilm-l3-onnx"), ("tiny-again", "tiny-onnx"))


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return time.perf_counter() - started


def node_pids(plane: ControlPlane) -> dict[str, int]:
    node_dir = plane.kubeconfig.parent / "node"
    return {n: int((node_dir / f"{n}.pid").read_text()) for n in ("kubelet", "containerd", "kube-proxy")}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def shim_rss_mib() -> list[float]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"containerd-shim-runc-v2" in (proc / "cmdline").read_bytes():
                    found.append(rss_mib(int(proc.name)))
            except OSError:
                continue
    return found


def startup_phases(pod_ip: str) -> dict[str, float]:
    text = httpx.get(f"http://{pod_ip}:8080/metrics", timeout=5).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("inference_startup_phase_seconds{"):
            labels, value = line.rsplit(" ", 1)
            phase = labels.split('phase="', 1)[1].split('"', 1)[0]
            found[phase] = float(value)
    return found


def apply_to_ready(
    models: Models, api: client.ApiClient, name: str, example: str
) -> tuple[float, dict[str, float], dict[str, float]]:
    """apply -> Available (s), the server's own startup phases, and when each step was first seen."""
    timeline = PodTimeline(models, api, name)
    started = time.perf_counter()
    timeline.start()
    models.create(real_example(example, rename=name))
    models.wait_condition(name, "Available", "True", timeout_s=300)
    elapsed = time.perf_counter() - started
    steps = timeline.stop()
    (pod,) = pods(api, models.namespace, name)
    return elapsed, startup_phases(pod.status.pod_ip), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", nargs="+", default=["cpu", "vllm"])
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    env = {**os.environ, "INFERGATE_IMAGE_VARIANTS": " ".join(args.variants)}
    image_cache = controlplane_path(env, "INFERGATE_CACHE") / "image"
    for variant in args.variants:
        recorded = image_cache / f"build-{variant}.seconds"
        rows.append(
            (
                f"image build {variant}, last full build (s)",
                recorded.read_text().strip() if recorded.exists() else "n/a",
            )
        )
        rows.append(
            (
                f"image build {variant}, this run (s)",
                f"{timed([str(REPO / 'tools/image/build'), variant], env):.1f}",
            )
        )

    cluster = f"igbench-real-{os.getpid()}"
    env["INFERGATE_CLUSTER"] = cluster
    started = time.perf_counter()
    plane = start(cluster, real_node=False)
    rows.append(("control plane up, no real node (s)", f"{time.perf_counter() - started:.1f}"))
    try:
        env.update(plane.env)
        # The CRDs go in first: for a moment after a CRD is established the API server answers its watches
        # 429 (storage initializing), and the operator's first watch would retry a second later, a delay
        # that belongs to installing the CRD, not to applying a model.
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        node_up = str(CONTROLPLANE / "node-up")
        rows.append(("real node up, new image store (s)", f"{timed([node_up], env):.1f}"))
        timed([str(CONTROLPLANE / "node-down")], env)
        rows.append(("real node up, warm (s)", f"{timed([node_up], env):.1f}"))
        for variant in args.variants:
            rows.append(
                (
                    f"image import {variant} into a new node (s)",
                    f"{timed([str(REPO / 'tools/image/import'), variant], env):.1f}",
                )
            )
        time.sleep(5)
        pids = node_pids(plane)
        for name, pid in pids.items():
            rows.append((f"idle RSS {name} (MiB)", f"{rss_mib(pid):.0f}"))

        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        models_dir = stage_models(Path(tempfile.mkdtemp(prefix="igbench-models-")))
        models_pvc(api, namespace, str(models_dir))
        with tempfile.TemporaryDirectory() as tmp:
            operator = OperatorProcess(
                plane.env,
                Path(tmp) / "operator.log",
                extra_env={"INFERGATE_SERVER_IMAGE": IMAGE, "INFERGATE_IMAGE_PULL_POLICY": "Never"},
            ).start()
            try:
                models = Models(api, namespace)
                for name, example in EXAMPLES:
                    elapsed, phases, steps = apply_to_ready(models, api, name, example)
                    rows.append((f"{name}: apply -> Ready (s)", f"{elapsed:.2f}"))
                    for step, at in steps.items():
                        rows.append((f"{name}: {step}, first seen at (s)", f"{at:.2f}"))
                    for phase in PHASES:
                        value = phases.get(phase)
                        rows.append(
                            (
                                f"{name}: {phase} (s, server metric)",
                                "n/a" if value is None else f"{value:.3f}",
                            )
                        )
                shims = shim_rss_mib()
                rows.append(
                    (
                        "pod shims with 2 models (count, MiB each)",
                        f"{len(shims)}, {sum(shims) / max(len(shims), 1):.0f}",
                    )
                )
            finally:
                operator.stop()
    finally:
        plane.down()
    print_table(rows)
    values = dict(rows)
    print(
        "realnode: "
        f"node_up_warm_s={values['real node up, warm (s)']} "
        f"tiny_ready_s={values['tiny: apply -> Ready (s)']} "
        f"minilm_ready_s={values['minilm-l3: apply -> Ready (s)']} "
        f"tiny_again_ready_s={values['tiny-again: apply -> Ready (s)']} "
        f"kubelet_rss_mib={values['idle RSS kubelet (MiB)']}"
    )


if __name__ == "__main__":
    main()
