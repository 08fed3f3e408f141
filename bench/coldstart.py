"""Cold start and the model supply chain, measured side by side in one run on this machine.

- first vs second replica on one node (a node cache): each replica is a real `infergate-server fetch`
  process (the init container's job: pull from the local registry, verify, fill or reuse the cache entry)
  and then a real `infergate-server serve` process, whose own /metrics give its verify and load phases.
  second_ratio = the second replica's fetch+verify / the first's (goal <= 0.10).
- re-verification throughput: the cache's re-verify (digest_of) vs `sha256sum` on the same file
  (reverify_ratio = sha256sum's time / ours; goal >= 0.9).
- OCI pull of the artifact (manifest + layer, every byte hashed against its pin) vs the registry's raw blob
  download with the same client (requests, through ORAS's session) to the same disk
  (oci_ratio = raw time / pull time; goal >= 0.8).

The artifact is a generated ONNX model of about 200 MB (one MatMul with a large initializer), pushed to CNCF
distribution's registry (tools/registry/build) on 127.0.0.1. Medians of --repeat runs.

Usage: .venv/bin/python bench/coldstart.py [--mb 200] [--repeat 3]
The last line is for scripts outside the repo:
coldstart: first_s=<x> second_s=<x> second_ratio=<x> reverify_ratio=<x> oci_ratio=<x>
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.table import print_table  # noqa: E402
from tests.server.registry import Registry, start_registry  # noqa: E402

CLI = [sys.executable, "-m", "infergate_server.cli"]


def build_model(path: Path, mb: int) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int((mb * (1 << 20) / 4) ** 0.5)
    weight = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "coldstart",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replica(uri: str, cache: Path, pod: Path) -> dict[str, float]:
    """One replica on the node: the fetch process, then the server's verify and load (its /metrics)."""
    pod.mkdir(parents=True)
    key = "oci-" + uri.rsplit("@sha256:", 1)[1]
    config: dict[str, Any] = {
        "model": {"name": "big", "uri": uri, "path": str(cache / "entries" / key / "big"), "format": "onnx"},
        "runtime": {"backend": "onnxruntime", "threads": {"intraOp": 1, "interOp": 1}},
        "golden": {"required": False},
    }
    cfg = pod / "server.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {**os.environ, "INFERGATE_NODE_CACHE": str(cache), "INFERGATE_FETCH_RECORD_DIR": str(pod)}
    started = time.perf_counter()
    subprocess.run([*CLI, "fetch", "--config", str(cfg)], env=env, check=True, capture_output=True)
    fetch_s = time.perf_counter() - started
    port = free_port()
    with (pod / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [*CLI, "serve", "--config", str(cfg), "--port", str(port)], env=env, stdout=log, stderr=log
        )
    try:
        phases = _phases(f"http://127.0.0.1:{port}", server, pod / "server.log")
    finally:
        server.terminate()
        server.wait(30)
    return {"fetch": fetch_s, "verify": phases["verify"], "load": phases["load"], "cache": phases["cache"]}


def _phases(url: str, server: subprocess.Popen[bytes], log: Path) -> dict[str, float]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).json().get("ready"):
                break
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"server never ready: {log.read_text()[-2000:]}")
    text = httpx.get(url + "/metrics", timeout=5).text
    out: dict[str, float] = {}
    for phase in ("verify", "load"):
        m = re.search(r'inference_startup_phase_seconds\{model="big",phase="' + phase + r'"\} (\S+)', text)
        assert m, phase
        out[phase] = float(m.group(1))
    hit = re.search(r'inference_startup_cache\{model="big",result="hit"\} 1', text)
    out["cache"] = 1.0 if hit else 0.0
    return out


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="artifact size in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from infergate_server import oci
    from infergate_server.artifacts import digest_of
    from infergate_server.oci_push import push

    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp_s:
        tmp = Path(tmp_s)
        model = tmp / "model.onnx"
        build_model(model, args.mb)
        size = model.stat().st_size
        registry: Registry = start_registry(tmp / "registry")
        try:
            uri = push(model, f"oci://{registry.host}/bench/big:1")
            firsts, seconds = [], []
            for i in range(args.repeat):
                cache = tmp / f"cache{i}"
                cache.mkdir()
                firsts.append(replica(uri, cache, tmp / f"r{i}-first"))
                seconds.append(replica(uri, cache, tmp / f"r{i}-second"))
                assert seconds[-1]["cache"] == 1.0, "the second replica did not start from the cache"
                shutil.rmtree(cache)

            entry = model  # the same bytes the cache holds
            ours = [timed(lambda: digest_of(entry)) for _ in range(args.repeat)]
            theirs = [
                timed(lambda: subprocess.run(["sha256sum", str(entry)], check=True, capture_output=True))
                for _ in range(args.repeat)
            ]

            ref = oci.parse_reference(uri)
            client = oci.registry_client(ref, None, "model.uri")
            (layer,) = oci.layers_of(oci.fetch_manifest(client, ref, "model.uri"), ref, "model.uri")
            blob_url = f"{client.prefix}://{ref.registry}/v2/{ref.repository}/blobs/{layer.digest}"

            def raw() -> None:
                with client.session.get(blob_url, stream=True) as resp, (tmp / "raw.bin").open("wb") as f:
                    for chunk in resp.iter_content(1 << 20):
                        f.write(chunk)
                (tmp / "raw.bin").unlink()

            def pulled() -> None:
                oci.pull(uri, tmp / "pulled.bin", 1 << 40)
                (tmp / "pulled.bin").unlink()

            raws, pulls = [], []
            for _ in range(args.repeat):  # interleaved, so both see the same page cache and load
                raws.append(timed(raw))
                pulls.append(timed(pulled))
        finally:
            registry.stop()

    med = statistics.median

    def fv(r: dict[str, float]) -> float:
        return r["fetch"] + r["verify"]

    first_s = med(fv(r) + r["load"] for r in firsts)
    second_s = med(fv(r) + r["load"] for r in seconds)
    second_ratio = med(fv(s) for s in seconds) / med(fv(f) for f in firsts)
    reverify_ratio = med(theirs) / med(ours)
    oci_ratio = med(raws) / med(pulls)
    mb = size / (1 << 20)
    print_table(
        [
            ("artifact", f"{mb:.0f} MiB ONNX, oci:// from distribution on 127.0.0.1"),
            (
                "first replica: fetch / verify / load",
                " / ".join(f"{med(r[k] for r in firsts):.2f} s" for k in ("fetch", "verify", "load")),
            ),
            (
                "second replica: fetch / verify / load",
                " / ".join(f"{med(r[k] for r in seconds):.2f} s" for k in ("fetch", "verify", "load")),
            ),
            ("second fetch+verify / first (goal <= 0.10)", f"{second_ratio:.2f}"),
            (
                "re-verify vs sha256sum",
                f"{mb / med(ours):.0f} vs {mb / med(theirs):.0f} MiB/s = {reverify_ratio:.2f} (goal >= 0.9)",
            ),
            (
                "OCI pull vs raw blob GET",
                f"{mb / med(pulls):.0f} vs {mb / med(raws):.0f} MiB/s = {oci_ratio:.2f} (goal >= 0.8)",
            ),
        ]
    )
    print(
        f"coldstart: first_s={first_s:.3f} second_s={second_s:.3f} second_ratio={second_ratio:.3f} "
        f"reverify_ratio={reverify_ratio:.3f} oci_ratio={oci_ratio:.3f}"
    )


if __name__ == "__main__":
    main()
