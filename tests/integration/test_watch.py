"""The operator's own metadata watch (watch.py) against the real API server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import kopf
import pytest
from infergate_operator.kube import KubeClient
from infergate_operator.watch import Change, KindWatch

from tests.integration.controlplane import ControlPlane

LABELS = {"app.kubernetes.io/managed-by": "infergate", "serving.infergate.io/inferencemodel": "owner-a"}


def connect(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> KubeClient:
    monkeypatch.setenv("KUBECONFIG", plane.env["KUBECONFIG"])
    info = kopf.login_with_kubeconfig(logger=logging.getLogger("test"), settings=kopf.OperatorSettings())
    assert info is not None
    return KubeClient.from_connection(info)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def configmap(name: str, labels: dict[str, str], value: str = "1") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": value},
    }


def configmap_watch(kube: KubeClient, namespace: str, changes: list[Change]) -> KindWatch:
    return KindWatch(
        kube,
        "v1",
        "ConfigMap",
        changes.append,
        namespace=namespace,
        label_selector="app.kubernetes.io/managed-by=infergate",
        remembered_label="serving.infergate.io/inferencemodel",
    )


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())


def test_watch_reports_labelled_changes_as_metadata_only(
    controlplane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        kube = connect(controlplane, monkeypatch)
        changes: list[Change] = []
        watch = configmap_watch(kube, namespace, changes)
        task = asyncio.create_task(watch.run())
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        try:
            await until(lambda: watch._listed, "the first listing")
            await kube.request("POST", base, body=configmap("other", {"team": "x"}))
            await kube.request("POST", base, body=configmap("mine", LABELS))
            await until(lambda: any(c.name == "mine" for c in changes), "ADDED of mine")
            await kube.request(
                "PATCH",
                f"{base}/mine",
                body={"data": {"k": "2"}},
                content_type="application/merge-patch+json",
            )
            await until(lambda: any(c.type == "MODIFIED" for c in changes), "MODIFIED of mine")
            await kube.request("DELETE", f"{base}/mine")
            await until(lambda: any(c.type == "DELETED" for c in changes), "DELETED of mine")
        finally:
            task.cancel()
        assert [c.type for c in changes] == ["ADDED", "MODIFIED", "DELETED"]
        assert {c.name for c in changes} == {"mine"}, "an object outside the selector was reported"
        assert all(c.kind == "ConfigMap" and c.namespace == namespace for c in changes)
        assert changes[0].labels == LABELS
        assert "data" not in changes[0].obj, "the watch sent the whole object, not its metadata"
        await kube.close()

    run(scenario)


def test_relist_reports_what_changed_while_the_watch_was_down(
    controlplane: ControlPlane, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        kube = connect(controlplane, monkeypatch)
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        for name in ("kept", "edited", "removed"):
            await kube.request("POST", base, body=configmap(name, LABELS))
        changes: list[Change] = []
        watch = configmap_watch(kube, namespace, changes)
        await watch._relist()
        assert changes == [], "the first listing is a baseline, not a change"
        await kube.request(
            "PATCH", f"{base}/edited", body={"data": {"k": "2"}}, content_type="application/merge-patch+json"
        )
        await kube.request("DELETE", f"{base}/removed")
        await kube.request("POST", base, body=configmap("new", LABELS))
        await watch._relist()
        seen = sorted((c.type, c.name) for c in changes)
        assert seen == [("ADDED", "new"), ("DELETED", "removed"), ("MODIFIED", "edited")]
        deleted = next(c for c in changes if c.type == "DELETED")
        assert deleted.labels == {"serving.infergate.io/inferencemodel": "owner-a"}
        await kube.close()

    run(scenario)


def test_an_unserved_kind_waits_instead_of_failing(
    controlplane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        kube = connect(controlplane, monkeypatch)
        # The Prometheus Operator's CRDs are not installed in the test plane.
        watch = KindWatch(kube, "monitoring.coreos.com/v1", "ServiceMonitor", lambda c: None)
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(1)
        assert not task.done(), "a 404 for a kind that is not installed ended the watch"
        task.cancel()
        await kube.close()

    run(scenario)
