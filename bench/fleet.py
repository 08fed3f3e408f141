"""The operator at fleet scale on the local control plane: kwok GPU nodes and a realistic model mix.

One run, two fresh clusters of the same shape (same nodes, namespaces and golden ConfigMaps):
- raw floor: the same InferenceModels, the children the operator would make and a status write each,
  created by a plain client with the same threads (its own cluster, so the operator never sees them),
  once before and once after the operator's run (the ratio is to their mean: the load on a shared
  machine drifts);
- the operator (one replica): models created with the same threads -> every model's status current and
  its workload present (seconds, ratio to the floor), RSS at that point;
- settled (the operator's own write counter still for 10 s), then an idle window: the operator's API
  writes (its infergate_operator_api_writes_total) and CPU (its /proc times), apiserver writes by resource;
- one model's spec change -> its workload's pod template carries the new config hash (p50/p99 over N
  models spread across the fleet, one at a time);
- restart with the fleet converged: writes until settled (goal 0), then a restart with one model changed
  while the operator was down: seconds from launch until that change reached its workload.

Usage: .venv/bin/python bench/fleet.py --models 10000 --nodes 1000 [--namespaces 50] [--threads 8]
Last line:
  fleet: models=<n> nodes=<n> ratio=<x> rss_mb=<n> change_p99_ms=<n> idle_writes=<n> restart_ready_s=<n>
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infergate_operator.builders import desired_children  # noqa: E402
from infergate_operator.context import ANNOTATION_CONFIG_HASH, make_context  # noqa: E402
from infergate_operator.settings import OperatorSettings  # noqa: E402
from infergate_operator.spec_golden import GoldenCase  # noqa: E402
from infergate_operator.validation import check_spec  # noqa: E402

from bench import fleet_drill  # noqa: E402
from bench.fleet_objects import (  # noqa: E402
    GROUP,
    LLM_CASES,
    PLURAL,
    TENSOR_CASES,
    VERSION,
    Mix,
    golden_configmap,
    node,
)
from bench.reconcile_scale import apiserver_writes, connect, in_parallel, percentile, rss_mb  # noqa: E402
from bench.table import print_table  # noqa: E402
from tests.integration.controlplane import ControlPlane, install_crds, start  # noqa: E402
from tests.integration.operator_process import OperatorProcess  # noqa: E402

PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
    "Rollout": "rollouts",
    "AnalysisTemplate": "analysistemplates",
}
CASES = {
    "tensor.yaml": tuple(GoldenCase.model_validate(c) for c in TENSOR_CASES),
    "llm.yaml": tuple(GoldenCase.model_validate(c) for c in LLM_CASES),
}
WRITES_RE = re.compile(r"^infergate_operator_api_writes_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
RECONCILES_RE = re.compile(r"^infergate_operator_reconciles_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def collection_path(api_version: str, plural: str, namespace: str) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}"


def post(api: client.ApiClient, path: str, body: dict[str, Any]) -> None:
    method, url, headers, payload, _ = api.param_serialize(
        "POST",
        path,
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, headers, payload)
    response.read()
    if not 200 <= response.status < 300:
        raise client.ApiException(status=response.status, reason=f"POST {path}: {response.data[:300]!r}")


def prepare(plane: ControlPlane, api: client.ApiClient, mix: Mix, nodes: int, threads: int) -> None:
    """CRDs, the fake GPU nodes, the namespaces and their golden ConfigMaps; waits for nodes Ready."""
    install_crds(plane)
    core = client.CoreV1Api(api)
    in_parallel(threads, lambda i: core.create_node(node(i)), nodes)
    namespaces = sorted({mix.namespace(i) for i in range(min(mix.models, mix.namespaces))})

    def make_namespace(ns: str) -> None:
        core.create_namespace({"metadata": {"name": ns}})
        core.create_namespaced_config_map(ns, golden_configmap(ns))

    in_parallel(threads, lambda i: make_namespace(namespaces[i]), len(namespaces))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready = sum(
            1
            for n in _list_all(lambda **kw: core.list_node(label_selector="type=kwok", **kw))
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        )
        if ready >= nodes:
            return
        time.sleep(2)
    raise TimeoutError(f"{nodes} fake nodes not Ready after 600 s")


def _list_all(call: Any) -> list[Any]:
    items: list[Any] = []
    token = None
    while True:
        page = call(limit=500, _continue=token) if token else call(limit=500)
        items.extend(page.items if hasattr(page, "items") and not isinstance(page, dict) else page["items"])
        meta = page.metadata if not isinstance(page, dict) else page["metadata"]
        token = meta._continue if not isinstance(meta, dict) else meta.get("continue")
        if not token:
            return items


def list_models(api: client.ApiClient) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=500, _continue=token or None)
        items.extend(page["items"])
        token = page["metadata"].get("continue", "")
        if not token:
            return items


def raw_floor(api: client.ApiClient, mix: Mix, threads: int) -> float:
    """The models, the children the operator would make, and a status write each, from a plain client."""
    custom = client.CustomObjectsApi(api)
    settings = OperatorSettings()

    def create(i: int) -> None:
        body = mix.model(i)
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        created = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        ref = body["spec"]["golden"].get("configMapRef")
        cases = CASES[ref["key"]] if ref else None
        spec = check_spec(body["spec"], cases).spec
        assert spec is not None
        for child in desired_children(spec, make_context(created["metadata"], spec, settings, cases)).apply:
            post(api, collection_path(child["apiVersion"], PLURALS[child["kind"]], ns), child)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, name, {"status": {"observedGeneration": 1}}
        )

    return in_parallel(threads, create, mix.models)


def workloads(api: client.ApiClient) -> int:
    apps = client.AppsV1Api(api)
    deployments = len(_list_all(lambda **kw: apps.list_deployment_for_all_namespaces(**kw)))
    custom = client.CustomObjectsApi(api)
    rollouts = len(
        _list_all(lambda **kw: custom.list_cluster_custom_object("argoproj.io", "v1alpha1", "rollouts", **kw))
    )
    return deployments + rollouts


def wait_converged(api: client.ApiClient, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = sum(
            1
            for m in list_models(api)
            if (m.get("status") or {}).get("observedGeneration") == m["metadata"]["generation"]
        )
        if current >= count and workloads(api) >= count:
            return
        time.sleep(max(2.0, count / 1000))  # a listing of 10,000 models is work for the API server too
    raise TimeoutError(f"not converged after {timeout_s} s")


def operator_writes(operator: OperatorProcess) -> float:
    return sum(float(v) for v in WRITES_RE.findall(operator.metrics()))


def writes_by_kind(operator: OperatorProcess) -> str:
    lines = operator.metrics().splitlines()
    return ", ".join(
        line.removeprefix("infergate_operator_api_writes_total")
        for line in lines
        if line.startswith("infergate_operator_api_writes_total{")
    )


def operator_reconciles(operator: OperatorProcess) -> float:
    return sum(float(v) for v in RECONCILES_RE.findall(operator.metrics()))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(operator: OperatorProcess, quiet_s: float = 10, timeout_s: float = 900) -> float:
    """Seconds until the operator's write counter stays still for `quiet_s`."""
    started = time.perf_counter()
    last, still_since = operator_writes(operator), time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        time.sleep(1)
        now = operator_writes(operator)
        if now != last:
            last, still_since = now, time.perf_counter()
        elif time.perf_counter() - still_since >= quiet_s:
            return time.perf_counter() - started
    raise TimeoutError(f"operator still writing after {timeout_s} s")


def workload_hash(api: client.ApiClient, body: dict[str, Any]) -> str | None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        if (body["spec"].get("rollout") or {}).get("strategy") == "Canary":
            obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", ns, "rollouts", name
            )
        else:
            obj = api.sanitize_for_serialization(client.AppsV1Api(api).read_namespaced_deployment(name, ns))
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    annotations = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    return annotations.get(ANNOTATION_CONFIG_HASH)


def change_spec(api: client.ApiClient, body: dict[str, Any], timeout: int) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"spec": {"runtime": {"requestTimeoutSeconds": timeout}}}
    )


def wait_hash_change(
    api: client.ApiClient, body: dict[str, Any], before: str | None, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if workload_hash(api, body) not in (before, None):
                return
        except client.ApiException as error:
            if error.status not in (429, 500, 503, 504):  # an overloaded API server: ask again
                raise
        time.sleep(0.01)
    raise TimeoutError(f"{body['metadata']}: change not in the workload after {timeout_s} s")


def change_latency(api: client.ApiClient, mix: Mix, samples: int, timeout_s: float = 60) -> list[float]:
    """Seconds per change; a change not seen within `timeout_s` counts as `timeout_s` (and is reported)."""
    out = []
    for k in range(samples):
        body = mix.model(k * mix.models // samples)
        before = workload_hash(api, body)
        started = time.perf_counter()
        change_spec(api, body, 40 + k)
        try:
            wait_hash_change(api, body, before, timeout_s)
        except TimeoutError as error:
            print(f"change sample {k}: {error}", file=sys.stderr)
        out.append(time.perf_counter() - started)
    return out


def measure_floor(cluster: str, mix: Mix, nodes: int, threads: int) -> float:
    plane = start(cluster)
    try:
        api = connect(plane, threads)
        prepare(plane, api, mix, nodes, threads)
        seconds = raw_floor(api, mix, threads)
        api.close()
    finally:
        plane.down()
    print(f"floor: {seconds:.1f} s", file=sys.stderr)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--pods-fraction", type=float, default=0.3)
    parser.add_argument("--autoscaling-fraction", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--change-samples", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for convergence")
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=0,
        help="a raw floor measured before (same sizes): skip measuring it (it took 20 min at 10,000)",
    )
    parser.add_argument("--quiet-timeout", type=float, default=900, help="seconds to wait for no writes")
    parser.add_argument("--drill", action="store_true", help="then the failure drill (bench/fleet_drill.py)")
    parser.add_argument("--drill-nodes", type=int, default=0, help="nodes deleted at once (default: a tenth)")
    parser.add_argument("--drill-changes", type=int, default=0, help="changes (default: 5 %%, at most 500)")
    parser.add_argument("--drill-down-seconds", type=float, default=10)
    args = parser.parse_args()
    try:
        mix = Mix(args.models, args.namespaces, args.pods_fraction, args.autoscaling_fraction)
    except ValueError as error:
        parser.error(str(error))
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    n = args.models
    with_pods = sum(1 for i in range(n) if mix.with_pods(i))
    tag = f"{os.getpid()}"

    floors = (
        [args.floor_seconds]
        if args.floor_seconds
        else [measure_floor(f"fleet-floor-{tag}", mix, args.nodes, args.threads)]
    )

    plane = start(f"fleet-op-{tag}")
    log = Path(f"/tmp/fleet-operator-{tag}.log")
    operator: OperatorProcess | None = None
    try:
        api = connect(plane, args.threads)
        prepare(plane, api, mix, args.nodes, args.threads)
        operator = OperatorProcess(plane.env, log).start()
        assert operator.process is not None
        time.sleep(3)
        rss_idle_empty = rss_mb(operator.process.pid)

        custom = client.CustomObjectsApi(api)
        started = time.perf_counter()
        in_parallel(
            args.threads,
            lambda i: custom.create_namespaced_custom_object(
                GROUP, VERSION, mix.namespace(i), PLURAL, mix.model(i)
            ),
            n,
        )
        created_s = time.perf_counter() - started
        wait_converged(api, n, args.timeout)
        run_s = time.perf_counter() - started
        rss_full = rss_mb(operator.process.pid)
        print(f"operator: created {created_s:.1f} s, converged {run_s:.1f} s", file=sys.stderr)

        settle_s = wait_quiet(operator, timeout_s=args.quiet_timeout)
        pid = operator.process.pid
        writes0, cpu0, api0, t0 = (
            operator_writes(operator),
            cpu_seconds(pid),
            apiserver_writes(plane),
            time.time(),
        )
        time.sleep(args.idle_seconds)
        idle_writes = operator_writes(operator) - writes0
        idle_cpu = (cpu_seconds(pid) - cpu0) / (time.time() - t0) * 100
        api1 = apiserver_writes(plane)
        by_resource = {r: api1[r] - api0.get(r, 0) for r in api1 if api1[r] - api0.get(r, 0)}
        print(f"idle apiserver writes by resource: {by_resource}", file=sys.stderr)
        rss_idle_full = rss_mb(pid)

        lat = change_latency(api, mix, args.change_samples)
        wait_quiet(operator, timeout_s=args.quiet_timeout)

        # Restart with nothing changed: every write it makes is a write it need not have made.
        operator.stop()
        operator = OperatorProcess(plane.env, log).start()
        assert operator.process is not None
        # Settled: every model looked at once (the listing's refreshes) and no write for 10 s.
        listed = time.perf_counter()
        while operator_reconciles(operator) < n and time.perf_counter() - listed < args.timeout:
            time.sleep(1)
        restart_quiet_s = time.perf_counter() - listed + wait_quiet(operator, timeout_s=args.quiet_timeout)
        restart_writes = operator_writes(operator)
        print(f"restart writes: {writes_by_kind(operator) or 'none'}", file=sys.stderr)

        # Restart with one model changed while the operator was down: launch -> the change in its workload.
        operator.stop()
        probe = mix.model(n // 2)
        before = workload_hash(api, probe)
        change_spec(api, probe, 99)
        launched = time.perf_counter()
        operator = OperatorProcess(plane.env, log).start()
        healthy_s = time.perf_counter() - launched
        wait_hash_change(api, probe, before, 300)
        restart_ready_s = time.perf_counter() - launched
        drill: dict[str, dict[str, Any]] = {}
        if args.drill:
            wait_quiet(operator, timeout_s=args.quiet_timeout)
            drill["restart"] = fleet_drill.restart_during_convergence(
                plane,
                api,
                mix,
                args.drill_changes or max(1, min(500, n // 20)),
                args.drill_down_seconds,
                change_spec,
                workload_hash,
                workloads,
                args.threads,
            )
            print(f"drill, API server restart: {drill['restart']}", file=sys.stderr)
            wait_quiet(operator, timeout_s=args.quiet_timeout)
            drill["nodes"] = fleet_drill.delete_nodes(
                api, args.drill_nodes or max(1, args.nodes // 10), lambda: list_models(api), args.threads
            )
            print(f"drill, nodes deleted: {drill['nodes']}", file=sys.stderr)
            assert operator.process is not None
            rss_drill = rss_mb(operator.process.pid)
        api.close()
    finally:
        if operator:
            operator.stop()
        plane.down()

    # The floor again after the operator: on a shared machine the load drifts, and one floor measured
    # before the operator alone gave ratios from 0.3 to 1.6 for the same code.
    if not args.floor_seconds:
        floors.append(measure_floor(f"fleet-floor2-{tag}", mix, args.nodes, args.threads))
    floor_s = statistics.mean(floors)
    ratio = run_s / floor_s
    change_p99 = percentile(lat, 0.99) * 1000
    rows = [
        (
            f"fleet: {n} models in {args.namespaces} namespaces, {args.nodes} kwok GPU nodes",
            f"{with_pods} with pods",
        ),
        (f"{n} models -> children + status current, operator", f"{run_s:.1f} s"),
        (
            f"raw floor: same models + children + status, plain client ({args.threads} threads), "
            + (
                "given (--floor-seconds, measured earlier)"
                if args.floor_seconds
                else "before / after the operator"
            ),
            " / ".join(f"{f:.1f}" for f in floors) + " s",
        ),
        ("ratio operator / mean floor (goal <= 1.5)", f"{ratio:.2f}x"),
        ("then until the operator's writes stop for 10 s", f"+{settle_s:.1f} s"),
        ("operator RSS idle with no models", f"{rss_idle_empty:.0f} MB"),
        (
            f"operator RSS at {n} models converged / after idle (goal <= 400 MB)",
            f"{rss_full:.0f} / {rss_idle_full:.0f} MB",
        ),
        (f"API writes by the operator in {args.idle_seconds} s idle (goal 0)", f"{idle_writes:.0f}"),
        (f"operator CPU in {args.idle_seconds} s idle (goal <= 2 %)", f"{idle_cpu:.1f} %"),
        ("spec change -> workload p50, idle fleet", f"{statistics.median(lat) * 1000:.0f} ms"),
        (f"spec change -> workload p99, {len(lat)} samples (goal <= 1 s)", f"{change_p99:.0f} ms"),
        (
            "restart, converged fleet: writes until settled (goal 0)",
            f"{restart_writes:.0f} (quiet after {restart_quiet_s:.0f} s)",
        ),
        (
            "restart with one change: launch -> healthy / change in workload (goal <= 30 s)",
            f"{healthy_s:.1f} / {restart_ready_s:.1f} s",
        ),
    ]
    if drill:
        r, d = drill["restart"], drill["nodes"]

        def secs(value: float | None) -> str:
            return "not reached" if value is None else f"{value:.1f} s"

        rows += [
            (
                f"drill: {r['changes']} spec changes, API server down {r['down_s']:.0f} s meanwhile: "
                "API answering again / all changes in workloads / missing",
                f"{secs(r['api_back_s'])} / {secs(r['all_changes_in_workloads_s'])} / {r['changes_missing']}",
            ),
            (
                "drill: workloads after it / models (no duplicate, no orphan)",
                f"{r['workloads']} / {r['models']}",
            ),
            (
                f"drill: {d['nodes_deleted']} nodes deleted at once ({d['pods_on_them']} pods of "
                f"{d['models_affected']} models): every model names them",
                f"{secs(d['all_named_s'])} ({d['models_naming_their_nodes']}/{d['models_affected']}, "
                f"{d['degraded_nodes_lost_when_named']} Degraded/NodesLost then)",
            ),
            (
                "drill: every model's unschedulableReplicas = the scheduler's refusals (after podgc)",
                f"{secs(d['unschedulable_counts_match_s'])} ({d['unschedulable_replicas_reported']} in all)",
            ),
            ("drill: operator RSS after it", f"{rss_drill:.0f} MB"),
        ]
    print_table(rows)
    print(
        f"fleet: models={n} nodes={args.nodes} ratio={ratio:.2f} rss_mb={max(rss_full, rss_idle_full):.0f} "
        f"change_p99_ms={change_p99:.0f} idle_writes={idle_writes:.0f} restart_ready_s={restart_ready_s:.1f}"
    )


if __name__ == "__main__":
    main()
