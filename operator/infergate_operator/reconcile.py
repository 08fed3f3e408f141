"""One InferenceModel's reconcile: check the spec, apply the plan, observe the children, write status.

Pure pieces (validation, builders, status) decide; this module fetches, applies and writes. One status
write per change, none when nothing changed, so an idle operator sends no writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from infergate_operator import canary_io, metrics
from infergate_operator.apply import ChildRejectedError, FieldConflict, apply_child, child_name, drifted
from infergate_operator.builders import Plan, desired_children
from infergate_operator.builders.scaledobject import KEDA_API, KEDA_HTTP_API
from infergate_operator.canary import workload_from_rollout
from infergate_operator.context import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_SPEC_HASH,
    BuildContext,
    make_context,
)
from infergate_operator.eventlimit import EventLimiter
from infergate_operator.fairslots import FairSlots, Priority
from infergate_operator.golden import golden_targets, observe_reports
from infergate_operator.golden_collector import GoldenCollector, read_period
from infergate_operator.golden_reader import GoldenReader
from infergate_operator.kube import ApiError, KubeClient
from infergate_operator.node_loss import NodeLosses
from infergate_operator.observed import Observed, WorkloadObservation, pod_facts, workload_from_deployment
from infergate_operator.quarantine_io import Quarantines
from infergate_operator.quarantine_status import quarantine_events
from infergate_operator.runtime_status import asked_runtime, observe_runtime
from infergate_operator.scheduling_status import restored
from infergate_operator.settings import OperatorSettings
from infergate_operator.spec import API_VERSION, KIND, GoldenCase, InferenceModelSpec
from infergate_operator.startup_status import observe_startup
from infergate_operator.status import compute_status, events_for, status_patch
from infergate_operator.validation import check_drift_baseline, check_spec, parse_golden_cases
from infergate_operator.watch import ChildIndex

LOG = logging.getLogger("infergate")
ARGO = "argoproj.io/v1alpha1"
WORKLOAD_KINDS = ("Deployment", "Rollout")
KEDA_KINDS = ("ScaledObject", "HTTPScaledObject")


def _transient(error: ApiError) -> bool:
    return error.status in (409, 429) or error.status >= 500


@contextlib.asynccontextmanager
async def _as_temporary() -> AsyncIterator[None]:
    """Errors that heal by themselves (the API server away, busy or in conflict) as kopf.TemporaryError."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as error:
        raise kopf.TemporaryError(f"API server unreachable: {error!r}", delay=2) from error
    except ApiError as error:
        if _transient(error):
            raise kopf.TemporaryError(
                f"API server: {error}", delay=5 if error.status != 409 else 2
            ) from error
        raise


def _nothing() -> None:
    pass


def follows_observed_state(obj: Mapping[str, Any], model: str) -> bool:
    """A child whose desired form changes with what is observed, not only with the spec: the golden
    Service selects the Rollout's newest pod hash, so a refresh applies it even when nobody edited it."""
    return bool(obj["kind"] == "Service" and obj["metadata"]["name"] == f"{model}-golden")


class Reconciler:
    def __init__(self, kube: KubeClient, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # By priority (spec changes first), then namespaces in turn: see fairslots.py.
        self.slots = FairSlots(settings.reconcile_concurrency)
        metrics.RECONCILE_SLOTS.labels("busy").set_function(lambda: self.slots.busy)
        metrics.RECONCILE_SLOTS.labels("waiting").set_function(self.slots.waiting)
        self.events = EventLimiter(clock=time.monotonic)
        self._prometheus_operator: tuple[float, bool] | None = None
        self._keda: tuple[float, bool] | None = None
        # resourceVersion of each child as our last apply left it: its watch event is our own echo.
        self._applied: dict[tuple[str, str, str], str] = {}
        # What the child watches have seen; without it every unwanted child is deleted blindly (404s).
        self.index: ChildIndex | None = None
        # Golden reports read from the servers, in the collector's own tasks (handlers run it).
        self.golden = GoldenCollector(
            GoldenReader(
                timeout_s=settings.golden_read_timeout_seconds, concurrency=settings.golden_read_concurrency
            )
        )
        # Pods failing golden while their siblings pass: evicted, nodes tainted (issue 18, quarantine_io.py).
        self.quarantines = Quarantines(kube, settings)
        # Where each model's pods run, and which were lost with deleted nodes (fed by the Node watch).
        self.node_losses = NodeLosses()

    @classmethod
    def connect(cls, info: kopf.ConnectionInfo, settings: OperatorSettings) -> Reconciler:
        return cls(KubeClient.from_connection(info), settings)

    async def close(self) -> None:
        await self.kube.close()
        await self.golden.reader.close()

    def _lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    async def converge(self, body: Mapping[str, Any], started: Callable[[], None] = _nothing) -> None:
        """Full reconcile from the object as kopf delivered it; `started` is called once it has a slot."""
        meta = body["metadata"]
        namespace = meta["namespace"]
        # Slot first, then the model's lock: a lock is only ever held by work that has its slot, so a
        # spec change never waits behind a re-read of its model that is itself waiting for a slot.
        async with (
            self.slots.slot(Priority.SPEC, namespace),
            self._lock(namespace, meta["name"]),
            _as_temporary(),
        ):
            started()
            await self._converge(body)

    async def refresh(
        self,
        namespace: str,
        name: str,
        *,
        repair: bool,
        priority: Priority = Priority.CHILD,
        started: Callable[[], None] = _nothing,
    ) -> None:
        """After a child event or on the timer: put back missing or edited children, refresh status.
        `started` is called once it has a slot (before it reads anything)."""
        async with self.slots.slot(priority, namespace), self._lock(namespace, name), _as_temporary():
            started()
            body = await self.kube.get(API_VERSION, KIND, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self._locks.pop((namespace, name), None)
                return
            if body["metadata"].get("generation") != (body.get("status") or {}).get("observedGeneration"):
                await self._converge(body)  # a spec change not yet handled: the whole plan, not a repair
                return
            prepared = await self._prepare(body)
            if isinstance(prepared, Observed):
                await self._write_status(body, prepared)
                return
            spec, ctx, plan = prepared
            live: dict[str, dict[str, Any] | None] = {}
            conflicts: list[FieldConflict] = []
            rejected: list[str] = []
            for obj in plan.apply:
                meta = obj["metadata"]
                if (
                    obj["kind"] not in WORKLOAD_KINDS
                    and not follows_observed_state(obj, name)
                    and self._unchanged_since_applied(obj)
                ):
                    continue  # nothing to repair, and status reads only the workload
                current = await self._get_child(obj["apiVersion"], obj["kind"], namespace, meta["name"])
                if repair and (current is None or drifted(obj, current)):
                    metrics.CHILD_REPAIRS.labels(obj["kind"]).inc()
                    LOG.info("%s/%s: putting back %s", namespace, name, child_name(obj))
                    current, conflict, refusal = await self._apply_one(obj)
                    conflicts.extend([conflict] if conflict else [])
                    rejected.extend([refusal] if refusal else [])
                live[child_name(obj)] = current
            observed = await self._observe(
                spec, ctx, plan, conflicts, rejected, live, body.get("status") or {}
            )
            # issue 6: the previous strategy's workload is deleted once the new one serves
            was_canary = bool((body.get("status") or {}).get("canary"))
            _, handover, previous = await canary_io.hold_handover(self.kube, plan, ctx, live, was_canary)
            if previous and not handover:
                await self._converge(body)
                return
            await self._write_status(body, replace(observed, handover=handover))

    async def _get_child(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        try:
            return await self.kube.get(api_version, kind, namespace, name)
        except ApiError as error:
            if error.status == 404:  # the kind itself is not served (e.g. no Argo Rollouts CRDs)
                return None
            raise

    async def _golden_cases(
        self, raw_spec: Mapping[str, Any], namespace: str
    ) -> tuple[tuple[GoldenCase, ...] | None, list[str]]:
        ref = (raw_spec.get("golden") or {}).get("configMapRef")
        if not ref:
            return None, []
        name, key = ref.get("name", ""), ref.get("key", "golden.yaml")
        configmap = await self.kube.get("v1", "ConfigMap", namespace, name)
        if configmap is None:
            return None, [f"spec.golden.configMapRef.name: ConfigMap {name} not found in {namespace}"]
        text = (configmap.get("data") or {}).get(key)
        if text is None:
            return None, [f"spec.golden.configMapRef.key: ConfigMap {name} has no key {key}"]
        cases, errors = parse_golden_cases(text)
        return (cases if not errors else None), errors

    async def _drift_baseline(
        self, raw_spec: Mapping[str, Any], namespace: str
    ) -> tuple[str | None, list[str]]:
        """The baseline text of spec.monitoring.inputDrift.baselineConfigMapRef (checked to be a baseline
        document here; the server checks it against the model's inputs when it starts)."""
        drift = (raw_spec.get("monitoring") or {}).get("inputDrift") or {}
        ref = drift.get("baselineConfigMapRef") if isinstance(drift, Mapping) else None
        if not ref:
            return None, []
        field = "spec.monitoring.inputDrift.baselineConfigMapRef"
        name, key = ref.get("name", ""), ref.get("key", "golden.yaml")
        configmap = await self.kube.get("v1", "ConfigMap", namespace, name)
        if configmap is None:
            return None, [f"{field}.name: ConfigMap {name} not found in {namespace}"]
        text = (configmap.get("data") or {}).get(key)
        if text is None:
            return None, [f"{field}.key: ConfigMap {name} has no key {key}"]
        problem = check_drift_baseline(text)
        return (text, []) if not problem else (None, [f"{field}: ConfigMap {name} key {key}: {problem}"])

    async def _prepare(
        self, body: Mapping[str, Any]
    ) -> Observed | tuple[InferenceModelSpec, BuildContext, Plan]:
        """The parsed spec, context and plan, or an Observed that carries why there is none."""
        meta, raw = body["metadata"], body.get("spec") or {}
        cases, golden_errors = await self._golden_cases(raw, meta["namespace"])
        baseline, baseline_errors = await self._drift_baseline(raw, meta["namespace"])
        check = check_spec(raw, cases, self.settings.gpu_product_label)
        errors = (*golden_errors, *baseline_errors, *check.errors)
        if check.spec is None or errors:
            # The children of the last good spec (if any) keep serving: report them honestly.
            deployment = await self.kube.get("apps/v1", "Deployment", meta["namespace"], meta["name"])
            rollout = None
            if deployment is None:
                rollout = await self._get_child(ARGO, "Rollout", meta["namespace"], meta["name"])
            workload = (
                workload_from_deployment(deployment)
                if deployment
                else (workload_from_rollout(rollout) if rollout else None)
            )
            return Observed(
                name=meta["name"],
                invalid_spec=tuple(errors),
                workload_kind="Rollout" if rollout else "Deployment",
                workload=workload,
            )
        monitoring = await self._has_prometheus_operator()
        # KEDA is asked about for a model with autoscaling, and for one whose KEDA objects are known to
        # exist (autoscaling was turned off: they must go, or KEDA keeps scaling the workload).
        wants_keda = check.spec.autoscaling is not None or self._keda_children_exist(meta)
        keda = await self._has_keda() if wants_keda else False
        ctx = make_context(
            meta,
            check.spec,
            self.settings,
            cases,
            prometheus_operator=monitoring,
            **await self._canary_facts(check.spec, meta),
            drift_baseline=baseline,
            keda=keda,
        )
        plan = desired_children(check.spec, ctx)
        pinned = await canary_io.pin_rollback(self.kube, check.spec, ctx, plan)  # issue 6: rollbackTo
        if isinstance(pinned, str):
            return Observed(name=meta["name"], invalid_spec=(pinned,))
        return check.spec, ctx, pinned

    async def _canary_facts(self, spec: InferenceModelSpec, meta: Mapping[str, Any]) -> dict[str, str | None]:
        """For a Canary model: its Rollout's newest pod hash (the golden Service selects it) and, when the
        golden URL template uses it, the golden Service's cluster IP."""
        if spec.rollout.strategy != "Canary":
            return {}
        namespace, name = meta["namespace"], meta["name"]
        rollout = await self._get_child(ARGO, "Rollout", namespace, name)
        candidate = ((rollout or {}).get("status") or {}).get("currentPodHash")
        ip = None
        if "{service_ip}" in self.settings.golden_url_template:
            service = await self.kube.get("v1", "Service", namespace, f"{name}-golden")
            ip = ((service or {}).get("spec") or {}).get("clusterIP")
        return {
            "candidate_hash": str(candidate) if candidate else None,
            "golden_service_ip": str(ip) if ip and ip != "None" else None,
        }

    async def _has_prometheus_operator(self) -> bool:
        """Whether ServiceMonitor/PrometheusRule are served; asked again every few minutes, not per object."""
        now = time.monotonic()
        if self._prometheus_operator is None or now - self._prometheus_operator[0] > 300:
            served = await self.kube.api_group_exists("monitoring.coreos.com/v1")
            self._prometheus_operator = (now, served)
        return self._prometheus_operator[1]

    def _keda_children_exist(self, meta: Mapping[str, Any]) -> bool:
        """Whether this process applied, or the child watches saw, a KEDA object of the model. Not asked of
        the API: a model without autoscaling costs no request (and a watch not yet listed says no; the
        next observe pass, after it has, deletes what is left)."""
        namespace, name = str(meta["namespace"]), str(meta["name"])
        return any(
            (kind, namespace, name) in self._applied
            or (self.index is not None and self.index.seen(kind, namespace, name))
            for kind in KEDA_KINDS
        )

    async def _has_keda(self) -> bool:
        """Whether KEDA's ScaledObject is served; asked again every few minutes, not per object."""
        now = time.monotonic()
        if self._keda is None or now - self._keda[0] > 300:
            self._keda = (now, await self.kube.api_group_exists(KEDA_API))
        return self._keda[1]

    @staticmethod
    def _child_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = obj.get("metadata") or {}
        return (str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name")))

    def is_own_echo(
        self, kind: str, namespace: str, name: str, version: str, *, deleted: bool = False
    ) -> bool:
        """Whether a watch event only reports what our own last write left (same resourceVersion)."""
        key = (kind, namespace, name)
        if deleted:
            self._applied.pop(key, None)
            return False
        return bool(version) and self._applied.get(key) == version

    def _unchanged_since_applied(self, obj: Mapping[str, Any]) -> bool:
        """The watch's newest version of this child is the one our last clean apply wrote."""
        key = self._child_key(obj)
        applied = self._applied.get(key)
        return applied is not None and self.index is not None and self.index.version(*key) == applied

    def _may_exist(self, kind: str, namespace: str, name: str) -> bool:
        if (kind, namespace, name) in self._applied or self.index is None:
            return True
        return self.index.may_exist(kind, namespace, name)

    def forget(self, namespace: str, name: str) -> None:
        """The model is gone: drop what was kept for it."""
        self._locks.pop((namespace, name), None)
        self._applied.pop((KIND, namespace, name), None)
        self.golden.forget((namespace, name))
        self.quarantines.forget((namespace, name))
        self.node_losses.forget((namespace, name))
        self.events.forget(namespace, name)

    async def _apply_one(
        self, obj: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, FieldConflict | None, str | None]:
        try:
            live, conflict = await apply_child(self.kube, obj)
        except ChildRejectedError as refusal:
            return None, None, str(refusal)
        metrics.API_WRITES.labels("apply", obj["kind"]).inc()
        if live is not None:
            self._applied[self._child_key(live)] = str(live["metadata"].get("resourceVersion"))
        return live, conflict, None

    async def _converge(self, body: Mapping[str, Any]) -> None:
        prepared = await self._prepare(body)
        if isinstance(prepared, Observed):
            # Nothing is applied for an invalid spec: the children of the last good spec keep serving.
            await self._write_status(body, prepared)
            return
        spec, ctx, plan = prepared
        if any(o["apiVersion"] == ARGO for o in plan.apply) and not await self.kube.api_group_exists(ARGO):
            missing = "the Argo Rollouts CRDs (argoproj.io/v1alpha1) are not installed in this cluster"
            await self._write_status(body, Observed(name=ctx.name, rollouts_missing=missing))
            return
        for group, what in ((KEDA_API, "KEDA"), (KEDA_HTTP_API, "the KEDA HTTP add-on")):
            wanted = any(o["apiVersion"] == group for o in plan.apply)
            if wanted and not await self.kube.api_group_exists(group):
                text = f"spec.autoscaling.minReplicas: 0 needs {what} ({group}), not installed in the cluster"
                await self._write_status(body, Observed(name=ctx.name, autoscaler_missing=text))
                return
        live: dict[str, dict[str, Any] | None] = {}
        conflicts: list[FieldConflict] = []
        rejected: list[str] = []
        for obj in plan.apply:
            current, conflict, refusal = await self._apply_one(obj)
            live[child_name(obj)] = current
            conflicts.extend([conflict] if conflict else [])
            rejected.extend([refusal] if refusal else [])
        was_canary = bool((body.get("status") or {}).get("canary"))  # issue 6: strategy switch
        plan, handover, _ = await canary_io.hold_handover(self.kube, plan, ctx, live, was_canary)
        for ref in plan.delete:
            if not self._may_exist(ref.kind, ctx.namespace, ref.name):
                continue
            try:
                if await self.kube.delete(ref.api_version, ref.kind, ctx.namespace, ref.name):
                    metrics.API_WRITES.labels("delete", ref.kind).inc()
                    LOG.info(
                        "%s/%s: deleted %s/%s, no longer wanted", ctx.namespace, ctx.name, ref.kind, ref.name
                    )
            except ApiError as error:
                if not (error.status == 404 and ref.optional_crd):
                    raise
        observed = await self._observe(spec, ctx, plan, conflicts, rejected, live, body.get("status") or {})
        await self._write_status(body, replace(observed, handover=handover))

    async def _observe(
        self,
        spec: InferenceModelSpec,
        ctx: BuildContext,
        plan: Plan,
        conflicts: list[FieldConflict],
        rejected: list[str],
        live: Mapping[str, dict[str, Any] | None],
        old_status: Mapping[str, Any],
    ) -> Observed:
        workload_obj = next((o for o in plan.apply if o["kind"] in ("Deployment", "Rollout")), None)
        workload = live.get(child_name(workload_obj)) if workload_obj else None
        if workload_obj is not None and workload is None:
            workload = await self._get_child(
                workload_obj["apiVersion"], workload_obj["kind"], ctx.namespace, ctx.name
            )
        observation = workload_from_deployment(workload) if workload else None
        pods: list[dict[str, Any]] = []
        listed = self._pods_worth_listing(observation)
        if listed:
            selector = ",".join(f"{k}={v}" for k, v in ctx.selector_labels.items())
            pods = await self.kube.list("v1", "Pod", ctx.namespace, label_selector=selector)
        annotations = {}
        if workload_obj is not None:
            template_meta = workload_obj["spec"]["template"]["metadata"].get("annotations") or {}
            annotations = {
                k: v for k, v in template_meta.items() if k in (ANNOTATION_SPEC_HASH, ANNOTATION_CONFIG_HASH)
            }
        # Golden and artifact facts come from the current revision's servers, as read so far.
        targets = golden_targets(pods, annotations)
        period = read_period(spec.golden.period_seconds if spec.golden else None)
        reads = self.golden.track((ctx.namespace, ctx.name), ctx.name, targets, period)
        golden, artifact = observe_reports(targets, reads, plan.revision)
        startup = observe_startup(targets, reads)
        runtime = observe_runtime(targets, reads, plan.revision, asked_runtime(spec))
        quarantine = await self.quarantines.observe(
            (ctx.namespace, ctx.name),
            spec,
            pods,
            targets,
            reads,
            old_status,
            replicas=observation.desired_replicas if observation else 0,
            rolled_out=observation.templates_updated if observation else False,
        )
        port = spec.service.port
        key = (ctx.namespace, ctx.name)
        node_loss = self.node_losses.observe(key, pods) if listed else None
        if not listed:  # no replica wanted: nothing runs anywhere, nothing is lost
            self.node_losses.forget(key)
        observed = Observed(
            name=ctx.name,
            workload_kind=workload_obj["kind"] if workload_obj else "Deployment",
            workload=observation,
            pods=pod_facts(pods, annotations),
            conflicts=tuple(
                f"{c.child}: field owned by {', '.join(c.managers) or 'another manager'}" for c in conflicts
            ),
            rejected=tuple(rejected),
            golden_configured=spec.golden is not None,
            golden=golden,
            artifact=artifact,
            startup=startup,
            runtime=runtime,
            quarantine=quarantine,
            node_loss=node_loss,
            revision=plan.revision,
            endpoint=f"{ctx.endpoint}:{port}",
            provenance={
                "sha256": spec.model.sha256 or "",
                "image": ctx.image,
                "backend": spec.runtime.backend,
                "hardware": (spec.hardware.gpu.product or "gpu") if spec.hardware.gpu else "cpu",
            },
        )
        if restored(observed):
            self.node_losses.recovered(key)
        return await canary_io.with_canary(self.kube, spec, ctx, observed, workload)  # issue 6

    @staticmethod
    def _pods_worth_listing(workload: WorkloadObservation | None) -> bool:
        """Pods explain trouble (scheduling, fetch, image pulls) and are where golden and artifact results
        are read from (their addresses, readiness, revision). With no replica wanted they add nothing."""
        return workload is None or workload.desired_replicas > 0

    async def _write_status(self, body: Mapping[str, Any], observed: Observed) -> None:
        meta = body["metadata"]
        old = body.get("status") or {}
        new = compute_status(old, observed, int(meta.get("generation", 0)), datetime.now(UTC))
        if dict(old) == new:
            return
        written = await self.kube.patch_status(
            API_VERSION, KIND, meta["namespace"], meta["name"], status_patch(old, new)
        )
        metrics.API_WRITES.labels("status", KIND).inc()
        version = (written.get("metadata") or {}).get("resourceVersion")
        if version:
            self._applied[(KIND, meta["namespace"], meta["name"])] = str(version)
        for change in events_for(old, new):
            await self._event(body, change.event_type, change.reason, change.summary())
        for event in quarantine_events(old.get("quarantine"), new.get("quarantine"), new.get("revision")):
            await self._event(body, "Warning", str(event.reason), event.message)

    async def _event(self, body: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        if not self.events.allow(meta["namespace"], meta["name"]):
            metrics.EVENTS_DROPPED.labels(reason).inc()
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "infergate-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.kube.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
            metrics.API_WRITES.labels("create", "Event").inc()
        except ApiError as error:  # an Event is best effort; status already says it
            LOG.warning("could not post event %s for %s: %s", reason, meta["name"], error)
