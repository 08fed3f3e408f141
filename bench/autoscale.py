"""Scale-from-zero and the hold layer's cost, on the real node with KEDA and its HTTP add-on.

One cluster of its own (real node + INFERGATE_AUTOSCALING=1), the operator as a local process. Measures:
- wake: for the tiny and MiniLM examples at zero replicas, one request through the KEDA interceptor,
  request arrival -> first byte of the answer (s), split into the time to a scheduled pod (scheduling:
  the ScaledObject's 0 -> 1 and the scheduler), container start (sandbox + image, to the init container's
  start), fetch/verify (the init container, and the server's own verify), load, golden (server
  metrics), and the rest (readiness seen by the endpoints, the interceptor forwarding); the API's
  timestamps have 1 s resolution, so the parts taken from them can read up to 1 s off. Each is woken
  twice with the operator's node cache on (INFERGATE_NODE_CACHE, a hostPath): the first wake's fetch
  misses and fills it, the second's is a hit (verified again, not downloaded); the server says which
  (inference_startup_cache). `--no-node-cache`: every pod fetches into its own emptyDir, both miss. The
  first wake may also pay for the node's first use of the image.
- the hold layer on a warm model: the same requests straight to the Service and through the
  interceptor, at c=1 and c=32, side by side: p50 added latency (ms) and the throughput ratio.
Goals: hold layer adds <= 0.5 ms p50 and costs <= 3 % throughput.

Usage: .venv/bin/python bench/autoscale.py [--requests N] [--cluster NAME]
Last line: autoscale: wake_tiny_s=<x> wake_minilm_s=<x> hold_p50_ms=<x> hold_tput_ratio=<x>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.table import print_table  # noqa: E402
from tests.integration.controlplane import ControlPlane, start  # noqa: E402
from tests.integration.models import Models, models_pvc  # noqa: E402
from tests.integration.operator_process import OperatorProcess, free_port  # noqa: E402
from tests.integration.waiting import wait_for  # noqa: E402
from tests.realnode.realnode import IMAGE, pods, real_example, stage_models  # noqa: E402

EXAMPLES = (("tiny", "tiny-onnx"), ("minilm-l3", "minilm-l3-onnx"))
SERVER_PHASES = ("verify", "load", "warmup", "golden")


def state(plane: ControlPlane, name: str) -> str:
    return (plane.kubeconfig.parent / name).read_text().strip()


def to_zero(doc: dict[str, Any]) -> dict[str, Any]:
    doc["spec"].pop("replicas", None)
    doc["spec"]["autoscaling"] = {
        "minReplicas": 0,
        "maxReplicas": 1,
        "idleSeconds": 10,
        "holdTimeoutSeconds": 300,
    }
    return doc


def request_body(doc: dict[str, Any]) -> dict[str, Any]:
    case = doc["spec"]["golden"]["cases"][0]
    inputs = case.get("inputs") or {}
    return {"inputs": [{"name": k, **v} for k, v in inputs.items()]}


def server_phases(pod_ip: str) -> tuple[dict[str, float], str]:
    """The server's start-up phases (s) and how its fetch used the node cache (hit, miss, ...; off)."""
    found: dict[str, float] = {}
    cache = "off"
    for line in httpx.get(f"http://{pod_ip}:8080/metrics", timeout=5).text.splitlines():
        if line.startswith("inference_startup_phase_seconds{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('phase="', 1)[1].split('"', 1)[0]] = float(value)
        elif line.startswith("inference_startup_cache{") and float(line.rsplit(" ", 1)[1]) == 1:
            cache = line.split('result="', 1)[1].split('"', 1)[0]
    return found, cache


def ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def wake_once(
    plane: ControlPlane, api: client.ApiClient, models: Models, name: str, body: dict[str, Any]
) -> tuple[dict[str, float], str]:
    """One request at zero replicas: arrival -> first byte, and where the time went."""
    wait_for(lambda: (models.get(name).get("status") or {}).get("phase") == "ScaledToZero", 300, "zero")
    wait_for(lambda: not pods(api, models.namespace, name), 120, "old pods gone")
    proxy = state(plane, "keda-http-interceptor.address")
    arrival = time.time()
    with (
        httpx.Client(timeout=300) as http,
        http.stream(
            "POST",
            f"http://{proxy}/v2/models/{name}/infer",
            json=request_body(body),
            headers={"Host": f"{name}.{models.namespace}"},
        ) as response,
    ):
        first = next(response.iter_raw(1), b"")
        first_byte = time.time()
        assert response.status_code == 200, response.status_code
        assert first, "no answer"
    (pod,) = pods(api, models.namespace, name)
    conds = {c.type: ts(c.last_transition_time) for c in pod.status.conditions}
    init = pod.status.init_container_statuses[0].state.terminated
    created = ts(pod.metadata.creation_timestamp) or arrival
    scheduled = conds.get("PodScheduled") or created
    init_start, init_end = ts(init.started_at) or scheduled, ts(init.finished_at) or scheduled
    phases, cache = server_phases(pod.status.pod_ip)
    ready = conds.get("Ready") or first_byte
    result = {
        "total": first_byte - arrival,
        "scheduling": scheduled - arrival,
        "container start": init_start - scheduled,
        "fetch/verify": (init_end - init_start) + phases.get("verify", 0.0),
        "load": phases.get("load", 0.0) + phases.get("warmup", 0.0),
        "golden": phases.get("golden", 0.0),
        "ready -> first byte": first_byte - ready,
    }
    return result, cache


def latencies(
    url: str, host: str | None, body: dict[str, Any], concurrency: int, n: int
) -> tuple[list[float], float]:
    headers = {"Host": host} if host else {}

    async def main() -> tuple[list[float], float]:
        times: list[float] = []
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:

            async def worker(count: int) -> None:
                for _ in range(count):
                    t0 = time.perf_counter()
                    r = await http.post(url, json=body, headers=headers)
                    times.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text

            await worker(20)  # warm the connections
            times.clear()
            started = time.perf_counter()
            await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
            return times, len(times) / (time.perf_counter() - started)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--cluster", default=f"igbench-scale-{os.getpid()}", help="the cluster to start and stop"
    )
    parser.add_argument(
        "--no-node-cache", action="store_true", help="no node cache: every wake fetches into its own emptyDir"
    )
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    env = dict(os.environ)
    plane = start(args.cluster, real_node=True, autoscaling=True)
    try:
        env.update(plane.env)
        subprocess.run([str(REPO / "tools/image/import"), "cpu"], env=env, check=True, timeout=1800)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        plane.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")
        namespace = "bench"
        plane.kubectl("create", "namespace", namespace)
        models_pvc(api, namespace, str(stage_models(Path(tempfile.mkdtemp(prefix="igbench-models-")))))
        with tempfile.TemporaryDirectory() as tmp:
            extra = {
                "INFERGATE_SERVER_IMAGE": IMAGE,
                "INFERGATE_IMAGE_PULL_POLICY": "Never",
                "INFERGATE_PROMETHEUS_ADDRESS": state(plane, "prometheus.address"),
                "INFERGATE_KEDA_HTTP_SCALER_ADDRESS": state(plane, "keda-http-scaler.address"),
                "INFERGATE_WAKE_TIMEOUT_HOST": "localhost",
                "INFERGATE_WAKE_TIMEOUT_PORT": str(free_port()),
            }
            if not args.no_node_cache:  # the real node is this host: a hostPath the pods' uid owns
                cache_dir = Path(tmp) / "node-cache"
                cache_dir.mkdir()
                os.chown(cache_dir, 65532, 65532)
                extra["INFERGATE_NODE_CACHE"] = f"hostPath:{cache_dir}"
            operator = OperatorProcess(plane.env, Path(tmp) / "operator.log", extra_env=extra).start()
            try:
                models = Models(api, namespace)
                wakes: dict[str, float] = {}
                for name, example in EXAMPLES:
                    body = to_zero(real_example(example))
                    models.create(body)
                    for run in ("first", "second"):
                        parts, cache = wake_once(plane, api, models, name, body)
                        for part, seconds in parts.items():
                            rows.append(
                                (f"{name} wake ({run}, node cache {cache}): {part} (s)", f"{seconds:.2f}")
                            )
                        wakes.setdefault(name, parts["total"])
                # The hold layer on a warm model: tiny still scales to zero (minReplicas 1 would take it off
                # the interceptor, which routes only models that can be at zero), but not while measured.
                models.patch("tiny", {"spec": {"autoscaling": {"idleSeconds": 3600}}})
                body = request_body(real_example("tiny-onnx"))
                held = f"http://{state(plane, 'keda-http-interceptor.address')}/v2/models/tiny/infer"
                woken = httpx.post(held, json=body, headers={"Host": f"tiny.{namespace}"}, timeout=300)
                assert woken.status_code == 200, woken.text
                models.wait_available("tiny", timeout_s=300)
                svc = client.CoreV1Api(api).read_namespaced_service("tiny", namespace)
                direct = f"http://{svc.spec.cluster_ip}:8080/v2/models/tiny/infer"
                ratios: dict[int, tuple[float, float]] = {}
                for c in (1, 32):
                    d_times, d_tput = latencies(direct, None, body, c, args.requests)
                    h_times, h_tput = latencies(held, f"tiny.{namespace}", body, c, args.requests)
                    p50_d, p50_h = statistics.median(d_times), statistics.median(h_times)
                    added = (p50_h - p50_d) * 1000
                    ratios[c] = (added, h_tput / d_tput)
                    rows.append(
                        (
                            f"c={c}: p50 direct / through the interceptor (ms)",
                            f"{p50_d * 1e3:.2f} / {p50_h * 1e3:.2f}",
                        )
                    )
                    rows.append(
                        (
                            f"c={c}: throughput direct / through the interceptor (req/s)",
                            f"{d_tput:.0f} / {h_tput:.0f}",
                        )
                    )
                    rows.append(
                        (f"c={c}: added p50 (ms), throughput ratio", f"{added:.2f}, {h_tput / d_tput:.3f}")
                    )
            finally:
                operator.stop()
    finally:
        plane.down()
    print_table(rows)
    print(
        "autoscale: "
        f"wake_tiny_s={wakes['tiny']:.2f} wake_minilm_s={wakes['minilm-l3']:.2f} "
        f"hold_p50_ms={ratios[1][0]:.2f} hold_tput_ratio={ratios[32][1]:.3f}"
    )


if __name__ == "__main__":
    main()
