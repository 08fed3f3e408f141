"""status.startup: how each replica of the current revision started, as its own server reports it.

Read with the golden reports (the `startup` section of GET /v2/models/{m}/golden): seconds per phase (fetch
from the init container's record, verify, load, warmup, golden), bytes where a phase reads them, and
whether the fetch reused the node cache. Only what a server said is written; a value of the wrong type or
an unknown phase is dropped, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infergate_operator.golden import PodRead, PodTarget, _reads_of

PHASES = ("fetch", "verify", "load", "warmup", "golden")
CACHE_RESULTS = ("hit", "miss", "refetched")
MAX_PODS = 10
"""Replicas listed in status (sorted by name); the metrics have every replica."""


@dataclass(frozen=True)
class PodStartup:
    pod: str
    cache: str | None
    seconds: tuple[tuple[str, float], ...]
    bytes: tuple[tuple[str, int], ...]


def _pod(pod: str, facts: Mapping[str, Any]) -> PodStartup:
    raw_seconds: Mapping[str, Any] = facts.get("seconds") or {}
    raw_bytes: Mapping[str, Any] = facts.get("bytes") or {}
    raw_seconds = raw_seconds if isinstance(raw_seconds, Mapping) else {}
    raw_bytes = raw_bytes if isinstance(raw_bytes, Mapping) else {}
    seconds = []
    nbytes = []
    for phase in PHASES:
        s = raw_seconds.get(phase)
        if isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s >= 0:
            seconds.append((phase, round(float(s), 3)))
        b = raw_bytes.get(phase)
        if isinstance(b, int) and not isinstance(b, bool) and b >= 0:
            nbytes.append((phase, b))
    cache = facts.get("cache")
    return PodStartup(pod, cache if cache in CACHE_RESULTS else None, tuple(seconds), tuple(nbytes))


def observe_startup(targets: Iterable[PodTarget], reads: Mapping[str, PodRead]) -> tuple[PodStartup, ...]:
    """The start-up each read server of the current revision reported, by pod name."""
    found = []
    for target, read in _reads_of(targets, reads):
        facts = (read.report or {}).get("startup")
        if isinstance(facts, Mapping):
            found.append(_pod(target.pod, facts))
    return tuple(sorted(found, key=lambda p: p.pod))


def startup_status(revision: str | None, pods: tuple[PodStartup, ...]) -> dict[str, Any] | None:
    if not pods:
        return None
    replicas = []
    for p in pods[:MAX_PODS]:
        entry: dict[str, Any] = {"pod": p.pod, "seconds": dict(p.seconds)}
        if p.bytes:
            entry["bytes"] = dict(p.bytes)
        if p.cache is not None:
            entry["cache"] = p.cache
        replicas.append(entry)
    status: dict[str, Any] = {"replicas": replicas}
    if revision:
        status["revision"] = revision
    return status
