"""kopf handlers: one reconcile for create/update/resume, watches on owned children that repair them,
and a slow timer that refreshes status. Every write goes through apply.py or `write_status`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from infergate_operator import metrics
from infergate_operator.reconcile import Reconciler
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import GROUP, PLURAL, VERSION

LOG = logging.getLogger("infergate")
CHILD_LABELS = {"app.kubernetes.io/managed-by": "infergate"}
MODEL_LABEL = f"{GROUP}/inferencemodel"
# Child events arriving within this window for one model are folded into one refresh.
REFRESH_DEBOUNCE_S = 0.3


class _Runtime:
    settings: OperatorSettings | None = None
    connection: kopf.ConnectionInfo | None = None
    reconciler: Reconciler | None = None
    pending: dict[tuple[str, str], asyncio.Task[None]] = {}


RUNTIME = _Runtime()


def configure(settings: OperatorSettings) -> None:
    RUNTIME.settings = settings


def settings() -> OperatorSettings:
    if RUNTIME.settings is None:
        RUNTIME.settings = OperatorSettings()
    return RUNTIME.settings


async def reconciler() -> Reconciler:
    if RUNTIME.reconciler is None:
        if RUNTIME.connection is None:
            raise kopf.TemporaryError("not logged in to the API server yet", delay=1)
        RUNTIME.reconciler = Reconciler.connect(RUNTIME.connection, settings())
    return RUNTIME.reconciler


@kopf.on.startup(id="infergate-startup")
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations under our domain, never in status (the schema would prune it).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Our own Events are one per transition; kopf's log-to-Event posting would add writes per handler.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # While the API server is away, back off and keep trying rather than exit.
    settings.networking.error_backoffs = [1, 2, 5, 10, 10, 10, 10, 10, 10, 10]
    settings.batching.error_delays = [1, 2, 5, 10, 10, 10]


@kopf.on.login(id="infergate-login")
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    RUNTIME.connection = info
    return info


@kopf.on.cleanup(id="infergate-cleanup")
async def cleanup(**_: Any) -> None:
    for task in RUNTIME.pending.values():
        task.cancel()
    if RUNTIME.reconciler is not None:
        await RUNTIME.reconciler.close()
        RUNTIME.reconciler = None


async def _converge(body: kopf.Body, kind: str) -> None:
    started = time.perf_counter()
    result = "error"
    try:
        work = await reconciler()
        await work.converge(dict(body))
        result = "ok"
    finally:
        metrics.RECONCILES.labels(kind, result).inc()
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", field="spec")
async def reconcile(body: kopf.Body, **_: Any) -> None:
    await _converge(body, "spec")


# Child watches drive status; this timer only catches what a missed watch event would hide.
OBSERVE_INTERVAL_S = OperatorSettings().observe_interval_seconds


@kopf.timer(GROUP, VERSION, PLURAL, id="observe", interval=OBSERVE_INTERVAL_S, initial_delay=60)
async def observe(body: kopf.Body, **_: Any) -> None:
    """Slow safety net: status from children even when no child event arrived (e.g. events missed)."""
    started = time.perf_counter()
    work = await reconciler()
    await work.refresh(body["metadata"]["namespace"], body["metadata"]["name"], repair=True)
    metrics.RECONCILE_SECONDS.labels("observe").observe(time.perf_counter() - started)


def _schedule_refresh(namespace: str, name: str) -> None:
    key = (namespace, name)
    if key in RUNTIME.pending and not RUNTIME.pending[key].done():
        return

    async def refresh() -> None:
        await asyncio.sleep(REFRESH_DEBOUNCE_S)
        RUNTIME.pending.pop(key, None)
        started = time.perf_counter()
        result = "error"
        try:
            work = await reconciler()
            await work.refresh(namespace, name, repair=True)
            result = "ok"
        except Exception:
            LOG.exception("refreshing %s/%s after a child event", namespace, name)
        finally:
            metrics.RECONCILES.labels("child", result).inc()
            metrics.RECONCILE_SECONDS.labels("child").observe(time.perf_counter() - started)

    RUNTIME.pending[key] = asyncio.get_running_loop().create_task(refresh())


async def _on_child_event(event: kopf.RawEvent, **_: Any) -> None:
    obj = event.get("object") or {}
    meta = obj.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(MODEL_LABEL)
    if not owner or not meta.get("namespace"):
        return
    if RUNTIME.reconciler is not None and RUNTIME.reconciler.is_own_echo(event.get("type"), obj):
        return
    _schedule_refresh(meta["namespace"], owner)


for _group, _version, _plural in (
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("argoproj.io", "v1alpha1", "rollouts"),  # issue 6: canary steps reach status without the timer
):
    kopf.on.event(_group, _version, _plural, id=f"child-{_plural}", labels=CHILD_LABELS)(_on_child_event)
