"""List + watch of one kind, usually as object metadata only: a trigger for refreshes, never a cache.

kopf starts a worker and keeps a memory for every object it watches; the operator only needs to know
*that* a child changed (to refresh its model), so it watches the children itself: one stream per kind,
`PartialObjectMetadata` only (the server sends no spec or status), and one resourceVersion per object
kept so that a relist after an expired watch still reports what changed while the stream was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from infergate_operator.kube import WATCH_SERVER_TIMEOUT_S, ApiError, KubeClient, resource_path

LOG = logging.getLogger("infergate.watch")
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_ITEM = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE_SIZE = 500
RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0)
# A kind that is not served (e.g. Argo Rollouts not installed) is asked for again this often.
ABSENT_KIND_RETRY_S = 60.0


@dataclass(frozen=True)
class Change:
    """One object of the watched kind was added, modified or deleted."""

    type: str  # ADDED | MODIFIED | DELETED
    kind: str
    namespace: str
    name: str
    labels: dict[str, str]
    resource_version: str
    obj: dict[str, Any]  # metadata only unless the watch asked for whole objects


class WatchExpiredError(Exception):
    """The resourceVersion we resume from is gone from the server's history (410): list again."""


@dataclass
class KindWatch:
    kube: KubeClient
    api_version: str
    kind: str
    on_change: Callable[[Change], None]
    namespace: str | None = None
    label_selector: str = ""
    metadata_only: bool = True
    # The label worth remembering per object, so that a deletion seen only by a relist can still be
    # reported with it (e.g. which model owned the child).
    remembered_label: str = ""
    # Whether the first listing reports every object as ADDED (for state the callback needs from the
    # start); otherwise it is only the baseline for later changes.
    report_listed: bool = False
    # A watch the operator can do without (e.g. Nodes, which a namespaced install may not grant): a 403
    # is said once and asked again slowly, not retried as a failure.
    optional: bool = False
    versions: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    _listed: bool = False
    _forbidden: bool = False

    def contains(self, namespace: str, name: str) -> bool | None:
        """Whether the object exists as last listed and watched; None before the first listing."""
        return (namespace, name) in self.versions if self._listed else None

    async def run(self) -> None:
        """Forever: list, then watch from the list's resourceVersion; relist when the watch expires."""
        failures = 0
        while True:
            try:
                version = await self._relist()
                failures = 0
                while True:
                    version = await self._watch(version)
            except WatchExpiredError:
                continue
            except ApiError as error:
                if error.status == 404:
                    # Not served: nothing of this kind exists, until it is installed and listed.
                    self.versions, self._listed = {}, True
                    LOG.debug(
                        "%s %s not served; asking again in %.0f s",
                        self.api_version,
                        self.kind,
                        ABSENT_KIND_RETRY_S,
                    )
                    await asyncio.sleep(ABSENT_KIND_RETRY_S)
                    continue
                if error.status == 403 and self.optional:
                    if not self._forbidden:
                        LOG.warning("may not watch %s (%s): what depends on it is off", self.kind, error)
                        self._forbidden = True
                    await asyncio.sleep(ABSENT_KIND_RETRY_S)
                    continue
                failures += 1
                LOG.warning("watching %s: %s", self.kind, error)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                failures += 1
                LOG.warning("watching %s: %r", self.kind, error)
            await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    async def _relist(self) -> str:
        """Lists every object; reports those that changed or vanished since the last list or watch."""
        path = resource_path(self.api_version, self.kind, self.namespace)
        accept = METADATA_LIST if self.metadata_only else "application/json"
        first = not self._listed and not self.report_listed
        seen: dict[tuple[str, str], tuple[str, str]] = {}
        params = {**self._params(), "limit": str(LIST_PAGE_SIZE)}
        while True:
            page = await self.kube.request("GET", path, params=params, accept=accept)
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                key = (str(meta.get("namespace") or ""), str(meta.get("name")))
                seen[key] = self._remember(meta)
                known = self.versions.get(key)
                if not first and known != seen[key]:
                    self._emit("ADDED" if known is None else "MODIFIED", item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params = {**params, "continue": token}
        if not first:
            for key in self.versions.keys() - seen.keys():
                labels = {self.remembered_label: self.versions[key][1]} if self.remembered_label else {}
                gone = {"namespace": key[0], "name": key[1], "resourceVersion": "", "labels": labels}
                self._emit("DELETED", {"metadata": gone})
        self.versions = seen
        self._listed = True
        return str((page.get("metadata") or {}).get("resourceVersion", ""))

    async def _watch(self, version: str) -> str:
        """One watch request from `version`; returns where the next one resumes."""
        params = {
            **self._params(),
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SERVER_TIMEOUT_S),
        }
        path = resource_path(self.api_version, self.kind, self.namespace)
        accept = METADATA_ITEM if self.metadata_only else "application/json"
        async for event in self.kube.stream(path, params=params, accept=accept):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise WatchExpiredError(obj.get("message", ""))
                raise ApiError(
                    int(obj.get("code", 500)), str(obj.get("reason", "")), str(obj.get("message", ""))
                )
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            key = (str(meta.get("namespace") or ""), str(meta.get("name")))
            if kind == "DELETED":
                self.versions.pop(key, None)
            else:
                self.versions[key] = self._remember(meta)
            self._emit(str(kind), obj)
        return version

    def _remember(self, meta: dict[str, Any]) -> tuple[str, str]:
        label = (meta.get("labels") or {}).get(self.remembered_label, "") if self.remembered_label else ""
        return str(meta.get("resourceVersion", "")), str(label)

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        change = Change(
            type=event_type,
            kind=self.kind,
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name")),
            labels=dict(meta.get("labels") or {}),
            resource_version=str(meta.get("resourceVersion", "")),
            obj=obj,
        )
        try:
            self.on_change(change)
        except Exception:  # one bad callback must not end the stream
            LOG.exception(
                "handling a %s change of %s %s/%s", change.type, self.kind, change.namespace, change.name
            )


@dataclass
class ChildIndex:
    """Which children exist, as the watches last saw them: a converge deletes only what may exist."""

    watches: dict[str, KindWatch] = field(default_factory=dict)

    def add(self, watch: KindWatch) -> None:
        self.watches[f"{watch.kind}/{watch.namespace or ''}"] = watch

    def _watch(self, kind: str, namespace: str) -> KindWatch | None:
        return self.watches.get(f"{kind}/{namespace}") or self.watches.get(f"{kind}/")

    def may_exist(self, kind: str, namespace: str, name: str) -> bool:
        """False only when the kind's watch has listed and has not seen the object since."""
        watch = self._watch(kind, namespace)
        return watch is None or watch.contains(namespace, name) is not False

    def seen(self, kind: str, namespace: str, name: str) -> bool:
        """True only when the kind's watch has listed and saw the object last (before a list: False)."""
        watch = self._watch(kind, namespace)
        return watch is not None and watch.contains(namespace, name) is True

    def version(self, kind: str, namespace: str, name: str) -> str | None:
        """The newest resourceVersion the watch saw of the object; None when it cannot say."""
        watch = self._watch(kind, namespace)
        if watch is None or not watch._listed:
            return None
        known = watch.versions.get((namespace, name))
        return known[0] if known else None
