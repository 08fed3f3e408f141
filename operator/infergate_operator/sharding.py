"""Sharding across operator replicas with Kubernetes Leases (coordination.k8s.io/v1).

Models map to one of `shards` virtual shards by a stable hash of namespace/name. Each shard is a Lease
(`infergate-shard-<k>`); a replica reconciles a model only while it holds that model's shard Lease. Each
replica also keeps a member Lease (`infergate-member-<identity>`), so that every replica knows how many
live peers share the shards: it takes its fair share (free or expired shard Leases only, by optimistic
concurrency on resourceVersion) and gives back what it holds beyond it, after its reconciles of that
shard have finished. A Lease counts as expired when its resourceVersion has not moved for its
leaseDurationSeconds as seen by this replica's own clock (client-go's leader election rule), so clock skew
between replicas does not matter. A replica stops working on a shard before its Lease can expire for the
others (RENEW_DEADLINE_FRACTION of the duration after its last successful renewal).

kopf's peering cannot do this: it pauses all but the highest-priority operator (same priority: all pause),
so in shard mode kopf's peering is off and these Leases decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infergate_operator.kube import ApiError, KubeClient

LOG = logging.getLogger("infergate.sharding")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
SHARD_PREFIX = "infergate-shard-"
MEMBER_PREFIX = "infergate-member-"
RENEW_DEADLINE_FRACTION = 0.66


def shard_of(namespace: str, name: str, shards: int) -> int:
    """Stable across processes and versions (not Python's salted hash)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def fair_share(identity: str, members: Iterable[str], shards: int) -> int:
    """How many shards `identity` should hold: an even split, the remainder to the first members by name."""
    ordered = sorted(set(members) | {identity})
    base, extra = divmod(shards, len(ordered))
    return base + (1 if ordered.index(identity) < extra else 0)


@dataclass(frozen=True)
class ShardView:
    """A shard Lease as this replica sees it."""

    holder: str
    expired: bool


def plan(
    identity: str, members: Iterable[str], views: dict[int, ShardView], shards: int
) -> tuple[list[int], list[int]]:
    """(shards to acquire, shards to release) to move towards the fair share; pure."""
    mine = sorted(k for k, v in views.items() if v.holder == identity and not v.expired)
    target = fair_share(identity, members, shards)
    if len(mine) > target:
        return [], mine[target:]
    free = [
        k
        for k in range(shards)
        if k not in mine and (k not in views or not views[k].holder or views[k].expired)
    ]
    return free[: target - len(mine)], []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Seen:
    version: str
    since: float  # monotonic time this replica first saw `version`


@dataclass
class ShardLeases:
    kube: KubeClient
    identity: str
    namespace: str
    shards: int
    lease_seconds: int = 15
    renew_seconds: float = 5.0
    on_acquired: Callable[[int], None] | None = None
    clock: Callable[[], float] = time.monotonic
    held: dict[int, float] = field(default_factory=dict)  # shard -> monotonic time of its last renewal
    _seen: dict[str, _Seen] = field(default_factory=dict)
    _busy: dict[int, int] = field(default_factory=dict)
    _idle: dict[int, asyncio.Event] = field(default_factory=dict)

    @property
    def member_lease(self) -> str:
        """The identity (user@host/…, a pod name) is no valid object name; its digest is."""
        return f"{MEMBER_PREFIX}{hashlib.sha256(self.identity.encode()).hexdigest()[:16]}"

    def owns_shard(self, shard: int) -> bool:
        renewed = self.held.get(shard)
        return renewed is not None and self.clock() - renewed < self.lease_seconds * RENEW_DEADLINE_FRACTION

    def holds_late(self, namespace: str, name: str) -> bool:
        """The model's shard is ours but its renewal is overdue (a slow API server): wait, don't drop."""
        shard = shard_of(namespace, name, self.shards)
        return shard in self.held and not self.owns_shard(shard)

    def owns(self, namespace: str, name: str) -> bool:
        return self.owns_shard(shard_of(namespace, name, self.shards))

    @contextlib.asynccontextmanager
    async def working(self, namespace: str, name: str) -> AsyncIterator[bool]:
        """Yields whether this replica owns the model now; a shard is released only once its work is done."""
        shard = shard_of(namespace, name, self.shards)
        if not self.owns(namespace, name):
            yield False
            return
        self._busy[shard] = self._busy.get(shard, 0) + 1
        self._idle.setdefault(shard, asyncio.Event()).clear()
        try:
            yield True
        finally:
            self._busy[shard] -= 1
            if self._busy[shard] == 0:
                self._idle[shard].set()

    def _path(self, name: str | None = None) -> str:
        base = LEASES.format(namespace=self.namespace)
        return f"{base}/{name}" if name else base

    def _body(self, name: str, holder: str, version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if version:
            meta["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _now(),
            },
        }

    def _expired(self, lease: dict[str, Any], now: float) -> bool:
        meta = lease["metadata"]
        version = str(meta.get("resourceVersion"))
        seen = self._seen.get(meta["name"])
        if seen is None or seen.version != version:
            self._seen[meta["name"]] = seen = _Seen(version, now)
        duration = int((lease.get("spec") or {}).get("leaseDurationSeconds") or self.lease_seconds)
        return now - seen.since > duration

    async def _write(self, name: str, holder: str, version: str | None) -> bool:
        try:
            if version is None:
                await self.kube.request("POST", self._path(), body=self._body(name, holder))
            else:
                await self.kube.request("PUT", self._path(name), body=self._body(name, holder, version))
        except ApiError as error:
            if error.status in (409, 422):  # someone else wrote it first
                return False
            raise
        return True

    async def tick(self) -> None:
        """One round: renew own Leases, read the others, acquire or release towards the fair share."""
        leases = (await self.kube.request("GET", self._path())).get("items") or []
        now = self.clock()
        by_name = {lease["metadata"]["name"]: lease for lease in leases}
        member = self.member_lease
        await self._write(member, self.identity, _version(by_name.get(member)))
        members = {
            str((lease.get("spec") or {}).get("holderIdentity"))
            for name, lease in by_name.items()
            if name.startswith(MEMBER_PREFIX) and not self._expired(lease, now)
        }
        views: dict[int, ShardView] = {}
        for k in range(self.shards):
            lease = by_name.get(f"{SHARD_PREFIX}{k}")
            if lease is not None:
                holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
                views[k] = ShardView(holder, self._expired(lease, now))
        # Renew what is still ours; a shard whose Lease another replica took is no longer ours.
        for k in list(self.held):
            lease = by_name.get(f"{SHARD_PREFIX}{k}")
            holder = str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")
            if (
                lease is None
                or holder != self.identity
                or not await self._write(f"{SHARD_PREFIX}{k}", self.identity, _version(lease))
            ):
                LOG.warning("lost shard %d", k)
                self.held.pop(k, None)
            else:
                self.held[k] = now
                views[k] = ShardView(self.identity, False)
        acquire, release = plan(self.identity, members, views, self.shards)
        for k in release:
            await self._release(k)
        for k in acquire:
            name = f"{SHARD_PREFIX}{k}"
            if await self._write(name, self.identity, _version(by_name.get(name))):
                self.held[k] = now
                LOG.info(
                    "acquired shard %d of %d (%d members)", k, self.shards, len(members | {self.identity})
                )
                if self.on_acquired is not None:
                    self.on_acquired(k)

    async def _release(self, k: int) -> None:
        renewed = self.held.pop(k, None)  # no new work starts on it from now
        if renewed is None:
            return
        idle = self._idle.get(k)
        if idle is not None and self._busy.get(k):
            await idle.wait()
        name = f"{SHARD_PREFIX}{k}"
        try:
            lease: dict[str, Any] | None = await self.kube.request("GET", self._path(name))
        except ApiError as error:
            if error.status != 404:
                raise
            lease = None
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            await self._write(name, "", _version(lease))
        LOG.info("released shard %d", k)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except (ApiError, OSError, TimeoutError) as error:
                LOG.warning("shard leases: %r", error)
            except Exception:  # a bug: say so, and keep renewing (a stopped loop loses every shard)
                LOG.exception("shard leases")
            await asyncio.sleep(self.renew_seconds)

    async def leave(self) -> None:
        """Clean shutdown: give every shard back and drop the member Lease, so peers take over at once."""
        for k in list(self.held):
            with contextlib.suppress(ApiError, OSError, TimeoutError):
                await self._release(k)
        with contextlib.suppress(ApiError, OSError, TimeoutError):
            await self.kube.request("DELETE", self._path(self.member_lease))


def _version(lease: dict[str, Any] | None) -> str | None:
    return None if lease is None else str(lease["metadata"].get("resourceVersion"))
