"""Tenants on the infer path: who is calling (API keys from a mounted Secret), whether they may call this
model, and whether their limits let them now (token bucket, concurrency).

Keys are never kept: only their SHA-256 digests, and a presented key's digest is compared with every
stored one by hmac.compare_digest, so the time taken says nothing about which key came close.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import TenancyConfig, TenantConfig
from .errors import Forbidden, QueueFull, Unauthorized

log = logging.getLogger(__name__)


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def take(self) -> float:
        """0 if a token was taken; else the seconds until one will be there."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@dataclass
class Tenant:
    name: str
    models: frozenset[str]
    bucket: TokenBucket | None
    max_concurrent: int | None
    in_flight: int = field(default=0)

    def may_call(self, model: str) -> bool:
        return "*" in self.models or model in self.models


def _tenant(cfg: TenantConfig, clock: Callable[[], float]) -> Tenant:
    bucket = None
    if cfg.requests_per_second is not None:
        burst = cfg.burst or max(1, math.ceil(cfg.requests_per_second))
        bucket = TokenBucket(cfg.requests_per_second, burst, clock)
    return Tenant(cfg.name, frozenset(cfg.models), bucket, cfg.max_concurrent)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Tenants:
    def __init__(self, cfg: TenancyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_name = {t.name: _tenant(t, clock) for t in cfg.tenants}
        self._dir = cfg.keys_dir
        self._keys: list[tuple[bytes, Tenant]] = []
        self.reload()

    def reload(self) -> None:
        """Read keysDir again (a mounted Secret is updated in place when it is rotated)."""
        keys: list[tuple[bytes, Tenant]] = []
        for name, tenant in self.by_name.items():
            found = _read_keys(self._dir / name)
            if not found:
                log.warning("tenant %s has no API keys in %s", name, self._dir)
            keys += [(digest(k), tenant) for k in found]
        if keys != self._keys:
            if self._keys:
                log.info("API keys reloaded from %s (%d keys)", self._dir, len(keys))
            self._keys = keys  # replaced whole: a request sees the old set or the new one

    def authenticate(self, key: str | None) -> Tenant:
        """The tenant whose key this is; Unauthorized (401) for none or an unknown one."""
        if not key:
            raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
        d = digest(key)
        found = None
        for stored, tenant in self._keys:  # all of them, whatever matches: no early exit to time
            if hmac.compare_digest(stored, d):
                found = tenant
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found

    def admit(self, tenant: Tenant, model: str) -> None:
        """Count one request of `tenant` in flight, or refuse it: 403 for a model it may not call, 429
        (with Retry-After) over its rate or concurrency. Every admit is paired with `release`."""
        if not tenant.may_call(model):
            raise Forbidden(f"tenant {tenant.name} may not call model {model}")
        if tenant.max_concurrent is not None and tenant.in_flight >= tenant.max_concurrent:
            raise QueueFull(f"tenant {tenant.name}: {tenant.max_concurrent} requests in flight already")
        if tenant.bucket is not None:
            wait = tenant.bucket.take()
            if wait > 0:
                raise QueueFull(
                    f"tenant {tenant.name}: over {tenant.bucket.rate:g} requests/s",
                    retry_after_s=max(1, math.ceil(wait)),
                )
        tenant.in_flight += 1

    @staticmethod
    def release(tenant: Tenant) -> None:
        tenant.in_flight -= 1


def _read_keys(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def bearer(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`."""
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
    return api_key
