"""Operator benchmark on the local control plane (a fresh cluster of its own), printed as a table.

- N InferenceModels -> every child created and status current: seconds, and the ratio to the raw floor
  (the same CRs and the same children created by a plain client loop, same thread count);
- apply -> children latency p50/p99 with an idle operator (one model at a time);
- operator RSS idle / at N models / after each of 3 delete-create cycles of N;
- API writes during 60 s of idle after convergence (apiserver's own request counters).

Models use replicas 0: the measure is the operator's work, not kwok's pods (110 pods fit a fake node).
Usage: .venv/bin/python bench/reconcile_scale.py [--count 1000] [--threads 8] [--idle-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infergate_operator.builders import desired_children  # noqa: E402
from infergate_operator.context import make_context  # noqa: E402
from infergate_operator.settings import OperatorSettings  # noqa: E402
from infergate_operator.validation import check_spec  # noqa: E402

from bench.table import print_table  # noqa: E402
from tests.integration.controlplane import ControlPlane, install_crds, start  # noqa: E402
from tests.integration.models import GROUP, PLURAL, VERSION, minimal  # noqa: E402
from tests.integration.operator_process import OperatorProcess  # noqa: E402

WRITE_VERBS = ("POST", "PATCH", "PUT", "DELETE", "APPLY", "CREATE", "UPDATE")
WATCHED_RESOURCES = ("inferencemodels", "configmaps", "services", "deployments", "events")


def bench_model(name: str) -> dict[str, Any]:
    return minimal(name, replicas=0)


def in_parallel(threads: int, fn: Callable[[int], None], count: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(count)))
    return time.perf_counter() - started


def raw_floor(api: client.ApiClient, namespace: str, count: int, threads: int) -> float:
    """The CRs and the same children the operator would make, created by a plain client loop."""
    custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    create_child = {
        "ConfigMap": core.create_namespaced_config_map,
        "Service": core.create_namespaced_service,
        "Deployment": apps.create_namespaced_deployment,
    }
    settings = OperatorSettings()

    def create(i: int) -> None:
        body = bench_model(f"f{i}")
        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        spec = check_spec(body["spec"]).spec
        assert spec is not None
        for child in desired_children(spec, make_context(created["metadata"], spec, settings)).apply:
            create_child[child["kind"]](namespace, child)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, f"f{i}", {"status": {"observedGeneration": 1}}
        )

    return in_parallel(threads, create, count)


def statuses_current(custom: client.CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return sum(
        1 for i in items if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]
    )


def wait_converged(api: client.ApiClient, namespace: str, count: int, timeout_s: float = 1800) -> None:
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (
            statuses_current(custom, namespace) >= count
            and len(apps.list_namespaced_deployment(namespace).items) >= count
            and len(core.list_namespaced_service(namespace).items) >= count
            and len(
                core.list_namespaced_config_map(
                    namespace, label_selector="app.kubernetes.io/managed-by"
                ).items
            )
            >= count
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{namespace}: not converged after {timeout_s}s")


def wait_settled(api: client.ApiClient, namespace: str, count: int, timeout_s: float = 900) -> float:
    """Seconds until every model reports its revision rolled out (NewRevisionAvailable): the workload
    controllers have caught up and the operator has written its last status, so what follows is idle."""
    custom = client.CustomObjectsApi(api)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        if sum(1 for i in items if _rolled_out(i.get("status") or {})) >= count:
            time.sleep(5)  # the last Events and watch echoes
            return time.perf_counter() - started
        time.sleep(1)
    raise TimeoutError(f"{namespace}: not all Ready after {timeout_s}s")


def _rolled_out(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Progressing" and c.get("reason") == "NewRevisionAvailable"
        for c in status.get("conditions") or []
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def apiserver_writes(plane: ControlPlane) -> dict[str, float]:
    """apiserver_request_total summed per resource over write verbs, for the resources the operator writes."""
    text = plane.kubectl("get", "--raw", "/metrics")
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS:
            resource = labels.get("resource", "")
            totals[resource] = totals.get(resource, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def namespace(api: client.ApiClient, name: str) -> str:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def create_models(api: client.ApiClient, ns: str, count: int, threads: int, prefix: str) -> None:
    custom = client.CustomObjectsApi(api)
    in_parallel(
        threads,
        lambda i: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, bench_model(f"{prefix}{i}")
        ),
        count,
    )


def delete_models(api: client.ApiClient, ns: str) -> None:
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if not custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, limit=1)["items"] and not (
            apps.list_namespaced_deployment(ns, limit=1).items
        ):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{ns}: models or children left after delete")


def latency(api: client.ApiClient, ns: str, samples: int) -> list[float]:
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    out = []
    for i in range(samples):
        name = f"lat{i}"
        started = time.perf_counter()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, bench_model(name))
        while True:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            if (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]:
                try:
                    apps.read_namespaced_deployment(name, ns)
                    break
                except client.ApiException:
                    pass
            time.sleep(0.005)
        out.append(time.perf_counter() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def connect(plane: ControlPlane, threads: int) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    api.configuration.connection_pool_maxsize = threads * 2
    return api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--latency-samples", type=int, default=40)
    args = parser.parse_args()
    n = args.count

    # The floor runs in a cluster of its own, so that its objects (and their garbage collection)
    # are neither seen by the operator nor counted in its idle window.
    floor_plane = start(f"infergate-bench-floor-{os.getpid()}")
    try:
        install_crds(floor_plane)
        api = connect(floor_plane, args.threads)
        floor_s = raw_floor(api, namespace(api, "floor"), n, args.threads)
        api.close()
    finally:
        floor_plane.down()

    plane = start(f"infergate-bench-op-{os.getpid()}")
    operator: OperatorProcess | None = None
    try:
        install_crds(plane)
        api = connect(plane, args.threads)
        operator = OperatorProcess(
            plane.env, Path(f"/tmp/infergate-bench-operator-{os.getpid()}.log")
        ).start()
        assert operator.process is not None
        pid = operator.process.pid
        time.sleep(5)
        rss_idle = rss_mb(pid)

        ns = namespace(api, "run")
        started = time.perf_counter()
        create_models(api, ns, n, args.threads, "m")
        wait_converged(api, ns, n)
        run_s = time.perf_counter() - started
        rss_full = rss_mb(pid)

        settle_s = wait_settled(api, ns, n)
        before = apiserver_writes(plane)
        time.sleep(args.idle_seconds)
        after = apiserver_writes(plane)
        idle = {r: after.get(r, 0) - before.get(r, 0) for r in after}
        idle_model_writes = sum(idle.get(r, 0) for r in WATCHED_RESOURCES)
        print("idle writes by resource:", {r: v for r, v in idle.items() if v}, file=sys.stderr)
        idle_peering = idle.get("clusterkopfpeerings", 0)

        lat = latency(api, namespace(api, "latency"), args.latency_samples)

        cycles = []
        for cycle in range(3):
            delete_models(api, ns)
            create_models(api, ns, n, args.threads, f"c{cycle}-")
            wait_converged(api, ns, n)
            cycles.append(rss_mb(pid))
        api.close()
    finally:
        if operator:
            operator.stop()
        plane.down()

    rows = [
        (f"{n} models -> children + status current, operator", f"{run_s:.1f} s"),
        (f"raw floor: same CRs + children, plain client loop ({args.threads} threads)", f"{floor_s:.1f} s"),
        ("ratio operator / floor (goal <= 1.5)", f"{run_s / floor_s:.2f}x"),
        ("then until every model reports its revision rolled out", f"+{settle_s:.1f} s"),
        ("apply -> children p50, idle operator", f"{statistics.median(lat) * 1000:.0f} ms"),
        ("apply -> children p99, idle operator (goal <= 1 s)", f"{percentile(lat, 0.99) * 1000:.0f} ms"),
        ("operator RSS idle (goal <= 80 MB)", f"{rss_idle:.1f} MB"),
        (f"operator RSS at {n} models (goal <= 120 MB)", f"{rss_full:.1f} MB"),
        (
            f"RSS after delete+create cycles of {n}: 1st / 2nd / 3rd",
            " / ".join(f"{r:.1f}" for r in cycles) + " MB",
        ),
        ("3rd cycle vs 1st (goal within +10 %)", f"{(cycles[2] / cycles[0] - 1) * 100:+.1f} %"),
        (
            f"API writes to models/children/events in {args.idle_seconds} s idle (goal 0)",
            f"{idle_model_writes:.0f}",
        ),
        (f"peering keep-alive writes in {args.idle_seconds} s idle (kopf, for HA)", f"{idle_peering:.0f}"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
