"""The operator under failure: SIGKILL mid-reconcile, an API server outage, and two copies at once."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.controlplane import ControlPlane, apiserver_down
from tests.integration.models import MODEL_LABEL, Models, minimal
from tests.integration.operator_process import OperatorProcess
from tests.integration.waiting import wait_for

pytestmark = pytest.mark.integration


def converged(models: Models, names: list[str]) -> bool:
    items = models.custom.list_namespaced_custom_object(
        "serving.infergate.io", "v1alpha1", models.namespace, "inferencemodels"
    )["items"]
    done = {
        i["metadata"]["name"]
        for i in items
        if (i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"]
        and any(c["type"] == "Available" and c["status"] == "True" for c in i["status"].get("conditions", []))
    }
    return done >= set(names)


def assert_no_duplicates_or_orphans(models: Models, names: list[str]) -> None:
    uids = {
        i["metadata"]["name"]: i["metadata"]["uid"]
        for i in models.custom.list_namespaced_custom_object(
            "serving.infergate.io", "v1alpha1", models.namespace, "inferencemodels"
        )["items"]
    }
    listed = [
        *models.core.list_namespaced_config_map(models.namespace, label_selector=MODEL_LABEL).items,
        *models.core.list_namespaced_service(models.namespace, label_selector=MODEL_LABEL).items,
        *models.apps.list_namespaced_deployment(models.namespace, label_selector=MODEL_LABEL).items,
    ]
    per_model: dict[str, list[str]] = {}
    for obj in listed:
        owner = obj.metadata.labels[MODEL_LABEL]
        refs = obj.metadata.owner_references or []
        assert [r.uid for r in refs] == [uids.get(owner)], f"{obj.kind}/{obj.metadata.name} is orphaned"
        per_model.setdefault(owner, []).append(type(obj).__name__)
    for name in names:
        assert sorted(per_model[name]) == ["V1ConfigMap", "V1Deployment", "V1Service"], (
            name,
            per_model.get(name),
        )


def test_sigkill_mid_reconcile_then_restart_converges(
    crds: ControlPlane, api_client: client.ApiClient, model_namespace: str, tmp_path: Path
) -> None:
    models = Models(api_client, model_namespace)
    first = OperatorProcess(crds.env, tmp_path / "first.log").start()
    names = [f"m{i:02d}" for i in range(50)]
    try:
        for name in names:
            models.create(minimal(name))
        wait_for(lambda: _reconciles(first) >= 1, 30, "the first reconcile")
    finally:
        first.kill()
    assert not converged(models, names), "killed too late to prove anything"
    second = OperatorProcess(crds.env, tmp_path / "second.log").start()
    try:
        wait_for(lambda: converged(models, names), 180, "all 50 models converged after the restart")
        assert_no_duplicates_or_orphans(models, names)
    finally:
        second.stop()


def test_api_server_outage_is_survived(
    crds: ControlPlane, api_client: client.ApiClient, model_namespace: str, tmp_path: Path
) -> None:
    models = Models(api_client, model_namespace)
    operator = OperatorProcess(crds.env, tmp_path / "operator.log").start()
    try:
        names = [f"o{i}" for i in range(5)]
        for name in names:
            models.create(minimal(name))
        wait_for(lambda: converged(models, names), 60, "models converged before the outage")
        for name in names:
            models.patch(name, {"spec": {"replicas": 2}})
        with apiserver_down(crds) as address:
            # Another local cluster created meanwhile must not get this port (it did once, and the
            # restarted API server could not bind); clients see the server gone.
            deadline = time.monotonic() + 30
            assert not _bindable(address), f"{address} is free during the outage"
            assert not _api_up(models), "the API server still answers"
            time.sleep(max(0.0, deadline - time.monotonic()))
            assert not _bindable(address), f"{address} was freed during the outage"
        wait_for(lambda: _api_up(models), 60, "the API server back")
        assert operator.process is not None
        assert operator.process.poll() is None, "the operator died"
        wait_for(lambda: converged(models, names), 120, "models converged after the outage")
        for name in names:
            assert models.apps.read_namespaced_deployment(name, models.namespace).spec.replicas == 2
        assert operator.process.poll() is None
    finally:
        operator.stop()


def _bindable(address: tuple[str, int]) -> bool:
    """Whether a Go-like listener (SO_REUSEADDR, as kube-apiserver binds) could take `address` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError:
            return False
    return True


def _api_up(models: Models) -> bool:
    try:
        models.core.list_namespace(limit=1, _request_timeout=2)
    except (ApiException, OSError, Exception):
        return False
    return True


def _reconciles(operator: OperatorProcess) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith('infergate_operator_reconciles_total{kind="spec"'):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_operators_take_turns(
    crds: ControlPlane, api_client: client.ApiClient, model_namespace: str, tmp_path: Path
) -> None:
    models = Models(api_client, model_namespace)
    a = OperatorProcess(crds.env, tmp_path / "a.log").start()
    b = OperatorProcess(crds.env, tmp_path / "b.log").start()
    try:
        # Both announce themselves in the peering object; the lower priority one stays paused.
        wait_for(lambda: len(_peers(models)) >= 2, 30, "both operators in the peering object")
        # Until the peers have seen each other both may work (e.g. resuming models that earlier tests
        # left in terminating namespaces): start counting once neither counter moves.
        before = _settled_counts(a, b)
        names = [f"t{i}" for i in range(8)]
        for name in names:
            models.create(minimal(name))
        wait_for(lambda: converged(models, names), 60, "models converged with two operators")
        counts = sorted([_reconciles(a) - before[id(a)], _reconciles(b) - before[id(b)]])
        assert counts[0] == 0, counts
        assert counts[1] >= len(names), counts
        active, standby = (a, b) if _reconciles(a) > before[id(a)] else (b, a)
        active.stop()
        models.create(minimal("after"))
        wait_for(lambda: converged(models, ["after"]), 90, "the standby to take over")
        assert _reconciles(standby) > before[id(standby)]
    finally:
        a.stop()
        b.stop()


def _peers(models: Models) -> dict[str, object]:
    peering = models.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "infergate")
    status: dict[str, object] = peering.get("status") or {}
    return status


def _settled_counts(a: OperatorProcess, b: OperatorProcess) -> dict[int, float]:
    def counts() -> dict[int, float]:
        return {id(a): _reconciles(a), id(b): _reconciles(b)}

    previous = counts()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(5)
        current = counts()
        if current == previous:
            return current
        previous = current
    raise AssertionError(f"reconcile counters never settled: {previous}")
