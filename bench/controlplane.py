"""Control-plane benchmark: cold build time (as recorded by tools/controlplane/build), warm `up` time,
and the API server's create throughput for ConfigMaps from a plain client loop — the floor that the
operator benchmarks are compared against.

Usage: .venv/bin/python bench/controlplane.py [--objects 1000] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.table import print_table  # noqa: E402
from tests.integration.controlplane import controlplane_path, start  # noqa: E402


def recorded_build_seconds(env: dict[str, str]) -> str:
    recorded = controlplane_path(env, "CP_HOME") / "build-seconds"
    return recorded.read_text().strip() if recorded.exists() else "n/a"


def create_configmaps(api: client.ApiClient, namespace: str, count: int, threads: int, prefix: str) -> float:
    core = client.CoreV1Api(api)

    def create(i: int) -> None:
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"{prefix}-{i}"), data={"i": str(i)}),
        )

    started = time.perf_counter()
    if threads == 1:
        for i in range(count):
            create(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, range(count)))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    cluster = f"infergate-bench-{os.getpid()}"
    started = time.perf_counter()
    plane = start(cluster)
    up_seconds = time.perf_counter() - started
    try:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        api.configuration.connection_pool_maxsize = max(args.threads, 4)
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench")))
        one = create_configmaps(api, "bench", args.objects, 1, "seq")
        many = create_configmaps(api, "bench", args.objects, args.threads, "par")
        api.close()
    finally:
        plane.down()

    rows = [
        ("cold build (all binaries, recorded by build)", f"{recorded_build_seconds(plane.env)} s"),
        ("warm `up` (binaries cached) to API healthy + nodes Ready + Argo", f"{up_seconds:.1f} s"),
        (f"ConfigMap creates, 1 client thread ({args.objects})", f"{one:.0f} objects/s"),
        (f"ConfigMap creates, {args.threads} client threads ({args.objects})", f"{many:.0f} objects/s"),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
