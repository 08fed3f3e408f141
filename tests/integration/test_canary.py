"""Canary rollouts on the local control plane: the real Argo Rollouts controller, a real Prometheus
scraping real infergate-server processes on 127.0.0.1, kwok pods.

kwok pods have no network, so the servers the gates judge run here: the operator's golden URL template
points at the "canary" server's port, and Prometheus scrapes it with the labels a pod scrape would give
it (namespace, rollouts_pod_template_hash of the canary ReplicaSet, read off the Rollout).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from kubernetes import client, config

from tests.integration.controlplane import REPO, ControlPlane, bin_dir, install_crds, start
from tests.integration.models import Models, minimal
from tests.integration.operator_process import OperatorProcess, free_port
from tests.integration.waiting import wait_for

sys.path.insert(0, str(REPO / "examples"))
import build_models

TINY = REPO / "examples" / "models" / "tiny-onnx"
ARGO = ("argoproj.io", "v1alpha1")
# Short intervals keep the module at a few minutes; a good server answers in milliseconds, so the 1 s
# latency gate holds on a busy machine too (the slow test tightens it).
GATES = {"interval": "2s", "count": 2, "window": "10s", "failureLimit": 0, "maxP95LatencySeconds": 1.0}


class Prometheus:
    """Debian's prometheus on 127.0.0.1, scraping targets from a file_sd file every second."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.targets = workdir / "targets.json"
        self.targets.write_text("[]")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "infergate",
                    "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "1s"}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, 60, "prometheus /-/ready")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.address}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def scrape(self, port: int, labels: dict[str, str]) -> None:
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": labels}]))
        tmp.replace(self.targets)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self._log.close()


class Server:
    """A real infergate-server (the tiny ONNX example) serving model `name` on a given port."""

    def __init__(self, workdir: Path, name: str, port: int, overrides: dict[str, Any]) -> None:
        doc = yaml.safe_load((TINY / "server.yaml").read_text())
        doc["model"]["name"] = name
        doc["model"]["path"] = str(TINY / doc["model"]["path"])
        doc["golden"]["periodSeconds"] = 0
        for section, values in overrides.items():
            doc[section] = {**doc.get(section, {}), **values} if isinstance(values, dict) else values
        config = workdir / f"server-{port}-{time.monotonic_ns()}.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self._log = (workdir / f"server-{port}.log").open("ab")
        command = [sys.executable, "-m", "infergate_server.cli", "serve", "--config", str(config)]
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=self._log, stderr=subprocess.STDOUT
        )
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None
        wait_for(self._golden_done, 60, f"server on {port} to finish its golden run")

    def _golden_done(self) -> bool:
        assert self.process.poll() is None, f"server exited with {self.process.returncode}"
        try:
            doc = httpx.get(f"{self.url}/v2/models/{self.name}/golden", timeout=1).json()
        except (httpx.TransportError, ValueError):
            return False
        return doc.get("phase") in ("Ready", "NotReady", "Failed") and "failed" in doc

    def traffic(self) -> None:
        """Infer requests in a loop until stop(), so Prometheus has latencies for the canary."""
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}

        def loop() -> None:
            with httpx.Client(timeout=10) as http:
                while not self._stop.is_set():
                    with contextlib.suppress(httpx.TransportError):
                        http.post(f"{self.url}/v2/models/{self.name}/infer", json=body)
                    self._stop.wait(0.1)

        self._traffic = threading.Thread(target=loop, daemon=True)
        self._traffic.start()

    def stop(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(15)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def prometheus(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = Prometheus(bin_dir(controlplane.env) / "prometheus", tmp_path_factory.mktemp("prometheus"))
    try:
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def canary_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def operator(
    crds: ControlPlane, prometheus: Prometheus, canary_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    build_models.build("tiny-onnx")
    extra = {
        "INFERGATE_PROMETHEUS_ADDRESS": prometheus.address,
        "INFERGATE_GOLDEN_URL_TEMPLATE": f"http://127.0.0.1:{canary_port}/v2/models/{{model}}/golden",
    }
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(crds.env, log, extra_env=extra).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def models(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Models:
    return Models(api_client, namespace)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def canary_model(name: str, steps: list[dict[str, Any]], **gates: Any) -> dict[str, Any]:
    body = minimal(name, replicas=2)
    body["spec"]["model"]["uri"] = "s3://models/tiny/model.onnx"  # no PVC: kwok runs no fetch anyway
    body["spec"]["model"]["version"] = "1"
    body["spec"]["rollout"] = {
        "strategy": "Canary",
        "canary": {"steps": steps, "analysis": {**GATES, **gates}},
    }
    return body


def rollout(models: Models, name: str) -> dict[str, Any]:
    group, version = ARGO
    obj = models.custom.get_namespaced_custom_object(group, version, models.namespace, "rollouts", name)
    return cast(dict[str, Any], obj)


def status(models: Models, name: str) -> dict[str, Any]:
    current: dict[str, Any] = models.get(name).get("status") or {}
    return current


def wait_reason(models: Models, name: str, reason: str, timeout_s: float = 90) -> dict[str, Any]:
    return models.wait_condition(name, "Progressing", "False" if reason in ("CanaryPromoted", "CanaryAborted")
                                 else "True", reason, timeout_s=timeout_s)  # fmt: skip


def new_revision(models: Models, name: str, version: str, prometheus: Prometheus, server: Server) -> str:
    """Changes the pod template; returns the canary's pod hash once Argo made its ReplicaSet, after
    pointing Prometheus at `server` as that canary."""
    before = rollout(models, name)["status"].get("stableRS")
    models.patch(name, {"spec": {"model": {"version": version}}})

    def canary_hash() -> str | None:
        current = rollout(models, name).get("status") or {}
        value = current.get("currentPodHash")
        return str(value) if value and value != before else None

    pod_hash = wait_for(canary_hash, 30, "the canary ReplicaSet")
    prometheus.scrape(server.port, {"namespace": models.namespace, "rollouts_pod_template_hash": pod_hash})
    return pod_hash


def replicasets(models: Models, name: str) -> dict[str, tuple[int, int]]:
    """pod hash → (spec replicas, available) of the Rollout's ReplicaSets."""
    listed = models.apps.list_namespaced_replica_set(models.namespace)
    found: dict[str, tuple[int, int]] = {}
    for rs in models.api.sanitize_for_serialization(listed)["items"]:  # type: ignore[no-untyped-call]
        meta = rs["metadata"]
        if any(o["kind"] == "Rollout" and o["name"] == name for o in meta.get("ownerReferences") or []):
            key = meta["labels"].get("rollouts-pod-template-hash", "")
            found[key] = (rs["spec"].get("replicas", 0), rs.get("status", {}).get("availableReplicas", 0))
    return found


def events(models: Models, name: str) -> list[str]:
    items = models.core.list_namespaced_event(
        models.namespace, field_selector=f"involvedObject.name={name}"
    ).items
    return [str(e.reason) for e in items if e.involved_object.kind == "InferenceModel"]


def ready_first_revision(models: Models, name: str, body: dict[str, Any]) -> str:
    models.create(body)
    wait_reason(models, name, "CanaryPromoted")
    current = status(models, name)
    assert current["phase"] == "Ready", current
    return str(current["revision"])


def test_good_revision_walks_every_step_and_is_promoted(
    models: Models, prometheus: Prometheus, canary_port: int, servers: list[Server], tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "4s"}}, {"analysis": {}}]
    first = ready_first_revision(models, "good", canary_model("good", steps, maxErrorRate=0.05))
    servers.append(Server(tmp_path, "good", canary_port, {}))
    servers[-1].traffic()
    new_revision(models, "good", "2", prometheus, servers[-1])
    seen: set[tuple[str, int | None, int]] = set()

    def promoted() -> dict[str, Any] | None:
        current = status(models, "good")
        seen.add((current.get("phase", ""), current.get("canaryStep"), current.get("canaryWeight", 0)))
        reasons = {c["type"]: c["reason"] for c in current.get("conditions") or []}
        done = reasons.get("Progressing") == "CanaryPromoted" and current.get("revision") != first
        return current if done else None

    final = wait_for(promoted, 120, "the canary to be promoted", interval_s=0.3)
    assert any(phase == "Progressing" and weight == 50 for phase, _, weight in seen), seen
    assert any(phase == "Paused" and weight == 50 for phase, _, weight in seen), seen
    assert final["phase"] == "Ready"
    assert final["canaryWeight"] == 0
    assert final["stableRevision"] == final["revision"] != first
    assert final["lastKnownGoodRevision"] == first
    assert final["canary"]["step"] == final["canary"]["steps"] == 3
    assert "CanaryPromoted" in events(models, "good")


def test_golden_failure_aborts_at_first_analysis_and_retry_recovers(
    models: Models, prometheus: Prometheus, canary_port: int, servers: list[Server], tmp_path: Path
) -> None:
    # The pause holds the steps before their analysis, as an unready canary pod would on a real node: the
    # background golden analysis is what catches the failure.
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}, {"analysis": {}}]
    ready_first_revision(models, "gold", canary_model("gold", steps))
    doc = yaml.safe_load((TINY / "server.yaml").read_text())
    cases = copy.deepcopy(doc["golden"]["cases"])
    cases[1]["expected"]["y"]["data"] = [9.0, 9.0, 9.0]  # case "negative" now fails
    servers.append(Server(tmp_path, "gold", canary_port, {"golden": {"cases": cases}}))
    stable_hash = rollout(models, "gold")["status"]["stableRS"]
    canary_hash = new_revision(models, "gold", "2", prometheus, servers[-1])
    aborted = wait_reason(models, "gold", "CanaryAborted")
    current = aborted["status"]
    assert current["phase"] == "Degraded"
    assert current["canary"]["failedMetric"] == "golden"
    degraded = next(c for c in current["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "CanaryAborted"
    assert "negative" in degraded["message"]
    assert current["canary"]["step"] <= 1  # never past the pause
    wait_for(lambda: replicasets(models, "gold").get(canary_hash, (1, 1)) == (0, 0), 60, "canary scaled to 0")
    assert replicasets(models, "gold")[stable_hash] == (2, 2)
    assert "CanaryAborted" in events(models, "gold")
    # retry with a fixed canary server: the same revision walks its steps again and is promoted
    servers.pop().stop()
    servers.append(Server(tmp_path, "gold", canary_port, {}))
    models.patch("gold", {"spec": {"rollout": {"canary": {"retry": "1"}}}})
    revision = wait_reason(models, "gold", "CanaryPaused")["status"]["revision"]
    models.patch("gold", {"spec": {"rollout": {"canary": {"promote": revision}}}})
    wait_reason(models, "gold", "CanaryPromoted")
    assert status(models, "gold")["phase"] == "Ready"


def test_p95_latency_breach_aborts(
    models: Models, prometheus: Prometheus, canary_port: int, servers: list[Server], tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "6s"}}, {"analysis": {}}]
    ready_first_revision(models, "slow", canary_model("slow", steps, maxP95LatencySeconds=0.15))
    servers.append(Server(tmp_path, "slow", canary_port, {"runtime": {"args": {"debugDelayMs": 400}}}))
    servers[-1].traffic()
    new_revision(models, "slow", "2", prometheus, servers[-1])
    current = wait_reason(models, "slow", "CanaryAborted", timeout_s=120)["status"]
    assert current["canary"]["failedMetric"] == "p95-latency", current["canary"]
    assert float(current["canary"]["failedValue"]) > 0.15
    degraded = next(c for c in current["conditions"] if c["type"] == "Degraded")
    assert "maxP95LatencySeconds" in degraded["message"]
    assert "limit 0.15" in degraded["message"]


def test_promote_and_abort_through_the_inference_model_and_kubectl_argo_rollouts(
    crds: ControlPlane, models: Models, prometheus: Prometheus, canary_port: int, servers: list[Server],
    tmp_path: Path,
) -> None:  # fmt: skip
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]  # an analysis step is added at the end
    ready_first_revision(models, "act", canary_model("act", steps))
    servers.append(Server(tmp_path, "act", canary_port, {}))
    new_revision(models, "act", "2", prometheus, servers[-1])
    wait_reason(models, "act", "CanaryPaused")
    assert status(models, "act")["phase"] == "Paused"
    models.patch("act", {"spec": {"rollout": {"canary": {"abort": True}}}})
    aborted = wait_reason(models, "act", "CanaryAborted")["status"]
    assert "spec.rollout.canary.abort" in aborted["message"]
    models.patch("act", {"spec": {"rollout": {"canary": {"abort": False}}}})
    revision = wait_reason(models, "act", "CanaryPaused")["status"]["revision"]
    models.patch("act", {"spec": {"rollout": {"canary": {"promote": revision}}}})
    wait_reason(models, "act", "CanaryPromoted")
    # the plugin still works on the Rollout the operator made
    new_revision(models, "act", "3", prometheus, servers[-1])
    wait_reason(models, "act", "CanaryPaused")
    crds.kubectl("argo", "rollouts", "promote", "act", "-n", models.namespace)
    final = wait_reason(models, "act", "CanaryPromoted")["status"]
    assert final["stableRevision"] == final["revision"] != revision
    assert final["lastKnownGoodRevision"] == revision


def test_rollback_to_the_last_known_good_revision_is_one_field(
    models: Models, prometheus: Prometheus, canary_port: int, servers: list[Server], tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {}}]
    first = ready_first_revision(models, "back", canary_model("back", steps))
    servers.append(Server(tmp_path, "back", canary_port, {}))
    new_revision(models, "back", "2", prometheus, servers[-1])
    promoted = wait_reason(models, "back", "CanaryPromoted")["status"]
    assert promoted["lastKnownGoodRevision"] == first
    models.patch("back", {"spec": {"rollout": {"rollbackTo": first}}})

    def rolled_back() -> dict[str, Any] | None:
        current = status(models, "back")
        return current if current.get("stableRevision") == first == current.get("revision") else None

    final = wait_for(rolled_back, 90, "the rollback to the last known good revision")
    assert final["lastKnownGoodRevision"] == promoted["revision"]
    template = rollout(models, "back")["spec"]["template"]
    assert template["metadata"]["annotations"]["serving.infergate.io/revision"] == first


def ready_pods(models: Models) -> int:
    pods = models.core.list_namespaced_pod(
        models.namespace, label_selector="app.kubernetes.io/instance=switch"
    )
    return sum(
        1
        for pod in pods.items
        if pod.metadata is not None
        and pod.metadata.deletion_timestamp is None
        and pod.status is not None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


def test_switching_strategies_never_drops_serving_capacity(models: Models) -> None:
    body = canary_model("switch", [{"setWeight": 50}])
    del body["spec"]["rollout"]
    models.create(body)
    models.wait_available("switch")
    wait_for(lambda: ready_pods(models) >= 2, 60, "two ready pods")
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(ready_pods(models))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        canary = {"strategy": "Canary", "canary": {"steps": [{"setWeight": 50}, {"analysis": {}}]}}
        models.patch("switch", {"spec": {"rollout": canary}})
        wait_reason(models, "switch", "CanaryPromoted")
        wait_for(
            lambda: not models.apps.list_namespaced_deployment(models.namespace).items, 60, "Deployment gone"
        )
        models.patch("switch", {"spec": {"rollout": {"strategy": "RollingUpdate", "canary": None}}})
        models.wait_condition("switch", "Progressing", "False", "NewRevisionAvailable", timeout_s=90)

        def rollout_gone() -> bool:
            group, version = ARGO
            listed = models.custom.list_namespaced_custom_object(group, version, models.namespace, "rollouts")
            return not cast(dict[str, Any], listed)["items"]

        wait_for(rollout_gone, 60, "Rollout gone")
        assert "canary" not in status(models, "switch")
    finally:
        done.set()
        sampler.join(10)
    assert samples
    assert min(samples) >= 2, samples


def test_missing_rollouts_crds_degrade_only_canary_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERGATE_NO_ROLLOUTS", "1")
    plane = start(f"infergate-norollouts-{os.getpid()}")
    try:
        install_crds(plane)
        operator = OperatorProcess(plane.env, tmp_path / "operator.log").start()
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            plane.kubectl("create", "namespace", "norollouts")
            models = Models(api, "norollouts")
            models.create(canary_model("canary", [{"setWeight": 50}]))
            plain = minimal("plain")
            plain["spec"]["model"]["uri"] = "s3://models/tiny/model.onnx"
            models.create(plain)
            models.wait_condition("canary", "Degraded", "True", "RolloutsNotInstalled")
            models.wait_available("plain")
            assert operator.process is not None
            assert operator.process.poll() is None  # the operator survived
        finally:
            operator.stop()
            api.close()
    finally:
        plane.down()
