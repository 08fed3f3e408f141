"""kopf wiring: one event handler for InferenceModels, the operator's own child watches, a slow re-read.

Reconciling is level-triggered: an InferenceModel whose `status.observedGeneration` lags its generation is
converged; any other event (the listing at start, a child changed, the periodic re-read) refreshes it,
which repairs children and status. kopf therefore stores nothing on the objects: no last-handled
annotation (one write less per change, and no 256 KiB copy of the spec), no progress records.
Every write goes through reconcile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import kopf

from infergate_operator import metrics
from infergate_operator.bootstrap import ensure_peering
from infergate_operator.builders.scaledobject import KEDA_API, KEDA_HTTP_API
from infergate_operator.context import LABEL_MANAGED_BY, LABEL_MODEL
from infergate_operator.fairslots import Priority
from infergate_operator.kube import ApiError
from infergate_operator.peering import CLUSTER, PeeringGate, own_identity
from infergate_operator.reconcile import Reconciler
from infergate_operator.settings import OperatorSettings
from infergate_operator.sharding import ShardLeases, shard_of
from infergate_operator.spec import GROUP, KIND, PLURAL, VERSION
from infergate_operator.watch import Change, ChildIndex, KindWatch

LOG = logging.getLogger("infergate")
PEERING_NAME = "infergate"
# Child events arriving within this window for one model are folded into one refresh.
REFRESH_DEBOUNCE_S = 0.3
# Delay before the n-th retry of a model whose reconcile failed (kopf's TemporaryError delay wins).
RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
CHILD_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("v1", "Pod"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),  # opt-in: watched so a converge deletes it only if it exists
    ("argoproj.io/v1alpha1", "Rollout"),  # issue 6: canary steps reach status without the re-read
    ("argoproj.io/v1alpha1", "AnalysisTemplate"),
)
# KEDA's objects: watched so that turning autoscaling off deletes them where they exist (and only there).
# KEDA writes their status every polling interval, so only their deletion (ours to put back) refreshes.
INDEX_ONLY_KINDS = (
    (KEDA_API, "ScaledObject"),
    (KEDA_HTTP_API, "HTTPScaledObject"),
)
Key = tuple[str, str]
# Which reconcile slots a refresh waits for, by kind of work (spec changes always go first).
PRIORITIES = {"resume": Priority.BACKGROUND, "observe": Priority.BACKGROUND}


class _Runtime:
    settings: OperatorSettings | None = None
    gate: PeeringGate = PeeringGate(identity="", priority=0, standalone=True)
    connection: kopf.ConnectionInfo | None = None
    connected: asyncio.Event | None = None
    reconciler: Reconciler | None = None
    pending: dict[Key, tuple[float, asyncio.Task[None]]] = {}
    failures: dict[Key, int] = {}
    # The newest body of a model whose spec is not yet converged; the queued step takes it.
    bodies: dict[Key, dict[str, Any]] = {}
    # Per model, the most urgent re-read waiting for a reconcile slot (its priority, and a token naming
    # the task): a request no more urgent folds into it, since it reads the model when it starts.
    queued: dict[Key, tuple[int, object]] = {}
    models: set[Key] = set()
    background: list[asyncio.Task[None]] = []
    shards: ShardLeases | None = None


RUNTIME = _Runtime()


def configure(settings: OperatorSettings, gate: PeeringGate) -> None:
    RUNTIME.settings = settings
    RUNTIME.gate = gate


def settings() -> OperatorSettings:
    if RUNTIME.settings is None:
        RUNTIME.settings = OperatorSettings()
    return RUNTIME.settings


def _connected() -> asyncio.Event:
    if RUNTIME.connected is None:
        RUNTIME.connected = asyncio.Event()
    return RUNTIME.connected


async def reconciler() -> Reconciler:
    if RUNTIME.reconciler is None:
        await _connected().wait()
        assert RUNTIME.connection is not None
        if RUNTIME.reconciler is None:
            RUNTIME.reconciler = Reconciler.connect(RUNTIME.connection, settings())
    return RUNTIME.reconciler


def _scope(namespace: str) -> str:
    """Which peering object decides for this namespace (kopf's own choice of object)."""
    return namespace if settings().namespaces else CLUSTER


@kopf.on.startup(id="infergate-peering")
async def check_peering(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    """Before kopf starts its watches: create the peering object if it is missing; without kopf's peering
    CRDs (or the right to create the object) run standalone and say so, never pause in silence."""
    if RUNTIME.gate.standalone:
        return
    if _login(settings=settings, **kwargs) is None:
        raise kopf.TemporaryError("no credentials yet (neither a service account nor a kubeconfig)", delay=5)
    work = await reconciler()
    try:
        check = await ensure_peering(work.kube, PEERING_NAME, _watched_namespaces())
    except (ApiError, aiohttp.ClientError, TimeoutError) as error:
        raise kopf.TemporaryError(f"checking kopf peering: {error!r}", delay=5) from error
    for created in check.created:
        LOG.info("created the peering object %s", created)
    if check.standalone:
        LOG.warning(
            "running standalone, without peering: %s. A second copy of the operator would work at the "
            "same time as this one.",
            check.why,
        )
        settings.peering.standalone = True
        settings.peering.mandatory = False
        RUNTIME.gate.standalone = True


def _watched_namespaces() -> tuple[str, ...]:
    return settings().namespaces


@kopf.on.startup(id="infergate-startup")
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Nothing of kopf's bookkeeping is needed (event handlers only); keep it off status if it ever is.
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
    RUNTIME.background.append(asyncio.get_running_loop().create_task(_background()))


@kopf.on.login(id="infergate-login")
async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return _login(**kwargs)


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        RUNTIME.connection = info
        _connected().set()
    return info


@kopf.on.cleanup(id="infergate-cleanup")
async def cleanup(**_: Any) -> None:
    for task in [*RUNTIME.background, *(task for _, task in RUNTIME.pending.values())]:
        task.cancel()
    if RUNTIME.shards is not None:
        await RUNTIME.shards.leave()  # peers take the shards over now, not after the Leases expire
    if RUNTIME.reconciler is not None:
        await RUNTIME.reconciler.close()
        RUNTIME.reconciler = None


@kopf.on.event(GROUP, VERSION, PLURAL, id="inferencemodel")
async def on_model(event: kopf.RawEvent, **_: Any) -> None:
    obj = event.get("object") or {}
    meta = obj.get("metadata") or {}
    key: Key = (str(meta.get("namespace")), str(meta.get("name")))
    if event.get("type") == "DELETED":
        RUNTIME.models.discard(key)
        RUNTIME.failures.pop(key, None)
        RUNTIME.bodies.pop(key, None)
        RUNTIME.queued.pop(key, None)
        if key in RUNTIME.pending:
            RUNTIME.pending.pop(key)[1].cancel()
        if RUNTIME.reconciler is not None:
            RUNTIME.reconciler.forget(*key)
        return
    RUNTIME.models.add(key)
    work = await reconciler()
    if work.is_own_echo(KIND, key[0], key[1], str(meta.get("resourceVersion"))):
        return
    if meta.get("deletionTimestamp"):
        return  # garbage collection removes the children
    if meta.get("generation") != (obj.get("status") or {}).get("observedGeneration"):
        # Queued, not awaited: kopf's worker (and the body it holds) is done at once, however many
        # models wait for a reconcile slot.
        RUNTIME.bodies[key] = _compact(obj)
        schedule_refresh(key, 0)
    elif event.get("type") is None:
        # The listing at start (kopf's "resume") of a converged model: re-read after the spec changes.
        schedule_refresh(key, kind="resume")
    else:
        # An edit that is not ours (labels, annotations, status by hand): repair and re-read.
        schedule_refresh(key)


def _compact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The model as a converge needs it: without metadata.managedFields (a third of a model's JSON, held
    per model while thousands wait for a slot after a burst of creations)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


async def _run(kind: str, key: Key, step: Callable[[], Awaitable[None]]) -> None:
    """One reconcile step with its metrics; a failure schedules a retry of the model, never a hot loop."""
    started = time.perf_counter()
    result = "error"
    try:
        await step()
        result = "ok"
        RUNTIME.failures.pop(key, None)
    except Exception as error:
        failures = RUNTIME.failures[key] = RUNTIME.failures.get(key, 0) + 1
        delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1]
        if isinstance(error, kopf.TemporaryError) and error.delay is not None:
            delay = float(error.delay)
            LOG.warning("%s/%s: %s; retrying in %.0f s", *key, error, delay)
        else:
            LOG.exception("%s/%s: reconcile failed; retrying in %.0f s", *key, delay)
        if key in RUNTIME.models:
            schedule_refresh(key, delay)
    finally:
        metrics.RECONCILES.labels(kind, result).inc()
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)


def schedule_refresh(key: Key, delay: float = REFRESH_DEBOUNCE_S, kind: str = "child") -> None:
    """Refresh the model after `delay` (converge it if a body waits in RUNTIME.bodies); requests that
    arrive meanwhile fold into the sooner one."""
    loop = asyncio.get_running_loop()
    due = loop.time() + delay
    waiting = RUNTIME.pending.get(key)
    if waiting is not None and not waiting[1].done():
        if waiting[0] <= due:
            return
        waiting[1].cancel()  # still asleep: a task pops itself before it starts working

    async def refresh() -> None:
        await asyncio.sleep(delay)
        RUNTIME.pending.pop(key, None)
        body = RUNTIME.bodies.pop(key, None)
        if not RUNTIME.gate.active(_scope(key[0])):
            return  # a peer with priority over us is working
        async with _owned(key) as mine:
            if not mine:
                if RUNTIME.shards is not None and RUNTIME.shards.holds_late(*key):
                    if body is not None:
                        RUNTIME.bodies.setdefault(key, body)
                    schedule_refresh(key, 1.0, kind)  # ours, renewal overdue: try again, don't drop it
                return  # another replica's shard; whoever takes it over re-reads the model
            work = await reconciler()
            priority = Priority.SPEC if body is not None else PRIORITIES.get(kind, Priority.CHILD)
            queued = RUNTIME.queued.get(key)
            if body is None and queued is not None and queued[0] <= priority:
                return  # folded: a re-read at least as urgent waits for its slot and reads the model then
            token = object()
            if queued is None or priority < queued[0]:
                RUNTIME.queued[key] = (priority, token)

            def started() -> None:  # the slot is ours: requests from now on need a re-read of their own
                if RUNTIME.queued.get(key, (0, None))[1] is token:
                    del RUNTIME.queued[key]

            try:
                if body is not None:
                    await _run("spec", key, lambda: work.converge(body, started))
                else:
                    await _run(
                        kind, key, lambda: work.refresh(*key, repair=True, priority=priority, started=started)
                    )
            finally:
                started()  # also when it never got a slot (an error, a cancellation)

    RUNTIME.pending[key] = (due, loop.create_task(refresh()))


@contextlib.asynccontextmanager
async def _owned(key: Key) -> AsyncIterator[bool]:
    if RUNTIME.shards is None:
        yield True
        return
    async with RUNTIME.shards.working(*key) as mine:
        yield mine


def _mine(key: Key) -> bool:
    return RUNTIME.shards is None or RUNTIME.shards.owns(*key)


def _on_shard_acquired(shard: int) -> None:
    """Models of a shard just taken over: re-read each (a spec change meanwhile converges it)."""
    assert RUNTIME.shards is not None
    for key in sorted(RUNTIME.models):
        if shard_of(*key, RUNTIME.shards.shards) == shard:
            schedule_refresh(key, 0, kind="resume")


def _on_child_change(change: Change) -> None:
    owner = change.labels.get(LABEL_MODEL)
    if not owner or not change.namespace or not RUNTIME.gate.active(_scope(change.namespace)):
        return
    deleted = change.type == "DELETED"
    work = RUNTIME.reconciler
    if work is not None and work.is_own_echo(
        change.kind, change.namespace, change.name, change.resource_version, deleted=deleted
    ):
        return
    if _mine((change.namespace, owner)):
        schedule_refresh((change.namespace, owner))


def _on_index_only_change(change: Change) -> None:
    if change.type == "DELETED":
        _on_child_change(change)


def _on_node_change(change: Change) -> None:
    """A node deleted: the models whose replicas ran on it are refreshed (their status names it)."""
    work = RUNTIME.reconciler
    if work is None:
        return
    if change.type == "DELETED":
        for key in work.node_losses.node_deleted(change.name):
            if key in RUNTIME.models and RUNTIME.gate.active(_scope(key[0])) and _mine(key):
                schedule_refresh(key)
    elif change.type == "ADDED":
        work.node_losses.node_added(change.name)


def _on_peering_change(change: Change) -> None:
    if change.name == PEERING_NAME:
        RUNTIME.gate.observe(
            change.namespace or CLUSTER, None if change.type == "DELETED" else change.obj.get("status")
        )


async def _observe_forever() -> None:
    """Slow safety net: every model re-read once per interval, spread evenly over it."""
    interval = settings().observe_interval_seconds
    await asyncio.sleep(interval)
    while True:
        models = sorted(RUNTIME.models)
        for key in models:
            if key in RUNTIME.models and RUNTIME.gate.active(_scope(key[0])) and _mine(key):
                schedule_refresh(key, 0, kind="observe")
            await asyncio.sleep(interval / len(models))
        if not models:
            await asyncio.sleep(interval)


async def _background() -> None:
    work = await reconciler()
    namespaces: tuple[str | None, ...] = settings().namespaces or (None,)
    selector = f"{LABEL_MANAGED_BY}=infergate"
    kinds = [(kind, _on_child_change) for kind in CHILD_KINDS]
    kinds += [(kind, _on_index_only_change) for kind in INDEX_ONLY_KINDS]
    watches = [
        KindWatch(
            work.kube,
            api_version,
            kind,
            on_change,
            namespace=namespace,
            label_selector=selector,
            remembered_label=LABEL_MODEL,
        )
        for (api_version, kind), on_change in kinds
        for namespace in namespaces
    ]
    work.golden.on_change = schedule_refresh  # what a server reports changed: refresh its model
    work.quarantines.on_change = schedule_refresh  # a node tainted: the other models' status names it
    work.index = ChildIndex()
    for watch in watches:
        work.index.add(watch)
    nodes = KindWatch(work.kube, "v1", "Node", _on_node_change, optional=True)
    work.node_losses.node_exists = lambda node: nodes.contains("", node)
    watches.append(nodes)
    if not RUNTIME.gate.standalone:
        peering_kind = "KopfPeering" if settings().namespaces else "ClusterKopfPeering"
        watches += [
            KindWatch(
                work.kube,
                "kopf.dev/v1",
                peering_kind,
                _on_peering_change,
                namespace=namespace,
                metadata_only=False,
                report_listed=True,
            )
            for namespace in namespaces
        ]
    runs = [*(w.run() for w in watches), _observe_forever(), work.golden.run()]
    if settings().shards:
        RUNTIME.shards = ShardLeases(
            work.kube,
            RUNTIME.gate.identity or own_identity(),
            settings().shard_namespace,
            settings().shards,
            lease_seconds=settings().shard_lease_seconds,
            renew_seconds=settings().shard_lease_seconds / 4,
            on_acquired=_on_shard_acquired,
        )
        runs.append(RUNTIME.shards.run())
    try:
        await asyncio.gather(*runs)
    except asyncio.CancelledError:
        raise
    except Exception:  # the watches catch their own errors; this is a bug, say it loudly
        LOG.exception("child watches stopped")
        raise
