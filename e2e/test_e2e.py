"""infergate end to end, as a user meets it: install, serve the CPU example, scale, self-heal, delete.

Runs on the local control plane by default (CI) and on kind through e2e/run-kind; see e2e/conftest.py.
The scenarios form one story and run in file order.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.target import Target
from tests.integration.waiting import wait_for
from tests.packaging.render import REPO, tools

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "models" / "tiny-onnx" / "inferencemodel.yaml"
NAME = "tiny"
IGM = "inferencemodel.serving.infergate.io"


def model(target: Target) -> dict[str, Any]:
    found: dict[str, Any] = target.get(IGM, NAME, "-n", target.namespace)
    return found


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def settled_ready(target: Target, replicas: int) -> dict[str, Any] | None:
    obj = model(target)
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    if status.get("phase") != "Ready" or status.get("readyReplicas") != replicas:
        return None
    return obj


def golden_read(target: Target) -> dict[str, Any] | None:
    """Ready, and the operator has tried its pods' golden reports: Ready can be written before the first
    read of a new pod has answered (or, for kwok's pods, timed out), and then says GoldenNotYetChecked."""
    obj = settled_ready(target, 1)
    if obj is None or condition(obj, "GoldenPassed").get("reason") == "GoldenNotYetChecked":
        return None
    return obj


def exists(target: Target, kind: str, name: str) -> bool:
    out = target.kubectl("get", kind, name, "-n", target.namespace, "--ignore-not-found", "-o", "name")
    return bool(out.strip())


def test_cpu_example_becomes_ready_with_golden_passed(target: Target) -> None:
    target.kubectl("apply", "--server-side", "-n", target.namespace, "-f", str(EXAMPLE))
    obj = wait_for(lambda: golden_read(target), 300 if target.serves_http else 90, "tiny Ready, golden read")
    assert condition(obj, "Available")["status"] == "True"
    # kwok's pods serve nothing: the operator cannot read their golden reports and says so.
    golden = condition(obj, "GoldenPassed")
    if target.serves_http:
        assert golden["status"] == "True", golden
    else:
        assert (golden["status"], golden["reason"]) == ("Unknown", "GoldenResultsUnreadable"), golden
    assert condition(obj, "Degraded")["status"] == "False"
    assert obj["status"]["endpoint"] == f"http://{NAME}.{target.namespace}.svc:8080"
    for kind, child in (("deployment", NAME), ("service", NAME), ("configmap", f"{NAME}-config")):
        assert exists(target, kind, child), f"{kind}/{child} missing"
    # What Argo CD would show for the status the operator really wrote.
    assert argocd_health(obj)[0] == "Healthy", argocd_health(obj)


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    from tests.packaging.test_argocd_health import health

    return health(obj)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_golden_case_is_served_over_http(target: Target, tmp_path: Path) -> None:
    if not target.serves_http:
        pytest.skip("model pods are simulated by kwok on the local control plane; run e2e/run-kind")
    case = yaml.safe_load(EXAMPLE.read_text())["spec"]["golden"]["cases"][0]
    port = free_port()
    forward = subprocess.Popen(
        [str(tools().kubectl), "port-forward", "-n", target.namespace, f"svc/{NAME}", f"{port}:8080"],
        env=target.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        inputs = [
            {"name": n, "shape": t["shape"], "datatype": t["datatype"], "data": t["data"]}
            for n, t in case["inputs"].items()
        ]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v2/models/{NAME}/infer",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )

        def answer() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    body: dict[str, Any] = json.loads(r.read())
                    return body
            except OSError:
                time.sleep(0.5)
                return None

        body = wait_for(answer, 60, "an answer through the port-forward")
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    outputs = {o["name"]: o for o in body["outputs"]}
    for name, expected in case["expected"].items():
        got = outputs[name]["data"]
        assert len(got) == len(expected["data"])
        for g, e in zip(got, expected["data"], strict=True):
            assert abs(g - e) <= case["atol"] + case["rtol"] * abs(e), (name, got, expected["data"])


def test_scaling_to_two_replicas_adds_a_disruption_budget(target: Target) -> None:
    target.kubectl(
        "patch", IGM, NAME, "-n", target.namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}'
    )
    stale = model(target)
    if (stale.get("status") or {}).get("observedGeneration") != stale["metadata"]["generation"]:
        assert argocd_health(stale)[0] == "Progressing"  # Argo CD waits for the operator to catch up
    obj = wait_for(
        lambda: settled_ready(target, 2), 300 if target.serves_http else 90, "tiny at 2 ready replicas"
    )
    assert obj["status"]["replicas"] == 2
    assert argocd_health(obj)[0] == "Healthy"
    pdb = wait_for(
        lambda: (
            exists(target, "poddisruptionbudget", NAME) and target.get("pdb", NAME, "-n", target.namespace)
        ),
        60,
        "the PodDisruptionBudget",
    )
    assert pdb["spec"]["maxUnavailable"] == 1


def test_a_child_deleted_by_hand_is_put_back(target: Target) -> None:
    before = target.get("service", NAME, "-n", target.namespace)["metadata"]["uid"]
    target.kubectl("delete", "service", NAME, "-n", target.namespace, "--wait=true")

    def recreated() -> str | None:
        if not exists(target, "service", NAME):
            return None
        uid: str = target.get("service", NAME, "-n", target.namespace)["metadata"]["uid"]
        return uid if uid != before else None

    wait_for(recreated, 90, "the Service to be put back")


def test_deleting_the_model_removes_its_children(target: Target) -> None:
    target.kubectl("delete", IGM, NAME, "-n", target.namespace, "--wait=true", "--timeout=120s")

    def gone() -> bool:
        return not any(
            exists(target, kind, child)
            for kind, child in (("deployment", NAME), ("service", NAME), ("configmap", f"{NAME}-config"))
        )

    wait_for(gone, 120, "the children to be garbage-collected")
