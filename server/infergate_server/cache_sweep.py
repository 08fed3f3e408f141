"""One sweep of the node cache: re-verify every idle entry against its pin, evict the ones that fail.

An entry is swept under its own lock, taken without waiting: an entry a fetch holds (filling or re-verifying
it) is skipped this time, and a fetch that arrives mid-sweep waits for that one entry's hash. Verification is
the fetch step's own on reuse (artifacts.verify_present) against the pin the fetch kept beside the copy
(node_cache.Pin), which must name the entry it lies in. A failed entry is evicted and recorded in the cache's
events.jsonl; the caller (cache_sweeper.py) turns the findings into metrics and Kubernetes Events. Entries
are not touched: a sweep is not a use, and the LRU order stays the replicas'.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import node_cache, oci
from .artifacts import ArtifactError, verify_present

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    VERIFIED = "verified"
    CORRUPTED = "corrupted"  # evicted
    LOCKED = "locked"  # a fetch holds it: skipped this time
    UNPINNED = "unpinned"  # no pin record yet (filled before pins were kept): skipped until its next reuse
    ERRORED = (
        "errored"  # could not be read (e.g. permissions): not evicted, a measurement failed, not the data
    )


@dataclass(frozen=True)
class Finding:
    key: str
    outcome: Outcome
    bytes: int = 0
    """The entry's size: re-hashed (VERIFIED), evicted (CORRUPTED), kept unverified (UNPINNED, ERRORED);
    0 for LOCKED (not looked at while a fetch fills it)."""
    detail: str = ""


def sweep(root: Path, stopping: Callable[[], bool] = lambda: False) -> list[Finding]:
    """Sweep every entry under `root` once, in key order; `stopping` is asked before each entry."""
    entries_dir = root / "entries"
    if not entries_dir.is_dir():
        return []
    findings = []
    for folder in sorted(entries_dir.iterdir()):
        if stopping():
            break
        if not folder.is_dir() or folder.is_symlink():
            continue
        finding = sweep_entry(node_cache.Entry(root, folder.name))
        if finding is not None:
            findings.append(finding)
    return findings


def sweep_entry(entry: node_cache.Entry) -> Finding | None:
    """Re-verify one entry; None when it vanished before its lock was free (evicted by a fetch)."""
    with node_cache.try_locked(entry) as held:
        if not held:
            log.info("node cache sweep: %s is locked by a fetch; skipped", entry.key)
            return Finding(entry.key, Outcome.LOCKED)
        if not entry.folder.is_dir():
            return None
        size = node_cache.folder_bytes(entry.folder)
        try:
            pin = node_cache.read_pin(entry)
        except node_cache.PinError as exc:
            log.warning("node cache sweep: %s", exc)
            return Finding(entry.key, Outcome.UNPINNED, bytes=size, detail=str(exc))
        try:
            reason = _failure(entry, pin)
        except OSError as exc:
            log.error("node cache sweep: could not read %s: %s", entry.key, exc)
            return Finding(entry.key, Outcome.ERRORED, bytes=size, detail=str(exc))
        if reason is None:
            return Finding(entry.key, Outcome.VERIFIED, bytes=size)
        node_cache.evict(entry)
    node_cache.record_corruption(entry, reason, found_by="sweep")
    log.warning("node cache sweep: evicted %s (%d B): %s", entry.key, size, reason)
    return Finding(entry.key, Outcome.CORRUPTED, bytes=size, detail=reason)


def _failure(entry: node_cache.Entry, pin: node_cache.Pin) -> str | None:
    """Why the entry does not verify against its pin; None when it does."""
    if pin.key() != entry.key:
        return f"{node_cache.PIN} pins {pin.key()}, not this entry"
    try:
        verify_present(pin.uri, entry.folder / pin.artifact, pin.sha256)
    except (ArtifactError, oci.OciError) as exc:  # DigestMismatch and OciDigestMismatch included
        return str(exc)
    return None
