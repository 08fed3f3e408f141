"""The node cache: verified artifacts shared by the replicas on one node (a hostPath or a node-local PVC).

Layout under the cache root (`$INFERGATE_NODE_CACHE`, mounted read-write into the fetch step and
read-only into the server):

    entries/<key>/<artifact>        the verified copy (and, for oci://, its kept manifest beside it)
    entries/<key>/.last-used        touched on every fill and reuse: the LRU clock
    locks/<key>.lock                flock'd while a fetch fills or re-verifies the entry

`<key>` names the pin (the operator renders it into model.path: `oci-<manifest digest>` or
`sha256-<sha256>`), so two models pinning the same bytes share one entry and a changed pin never reuses one.

A fetch holds the entry's lock (concurrent fetches of one digest on a node download once: the second waits,
then finds the entry and re-verifies it), reuses the entry only if it verifies (a corrupted entry is evicted
and fetched again), and then evicts least-recently-used entries, never a locked one, until the cache is under
its size limit. The server re-verifies whatever it loads; nothing unverified is ever written to an entry
(fetch() stages beside it and renames after verification).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "INFERGATE_NODE_CACHE"
MAX_BYTES_ENV = "INFERGATE_NODE_CACHE_MAX_BYTES"
LAST_USED = ".last-used"
EVENTS = "events.jsonl"
"""One JSON line per corrupted entry found (time, key, reason): what the node's cache saw."""


@dataclass(frozen=True)
class Entry:
    root: Path
    key: str

    @property
    def folder(self) -> Path:
        return self.root / "entries" / self.key

    @property
    def lock_path(self) -> Path:
        return self.root / "locks" / f"{self.key}.lock"


def entry_for(root: Path, artifact: Path) -> Entry | None:
    """The entry `artifact` (a model.path) lies in, or None when it is not inside the cache."""
    try:
        rel = artifact.resolve().relative_to((root / "entries").resolve())
    except ValueError:
        return None
    if len(rel.parts) < 2:
        return None
    return Entry(root, rel.parts[0])


@contextlib.contextmanager
def locked(entry: Entry) -> Iterator[None]:
    """Hold the entry's lock (blocking): one fetch per entry and node at a time."""
    entry.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with entry.lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _is_locked(entry: Entry) -> bool:
    try:
        with entry.lock_path.open("a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return True


def touch(entry: Entry) -> None:
    marker = entry.folder / LAST_USED
    marker.touch()
    os.utime(marker)


def record_corruption(entry: Entry, reason: str) -> None:
    """Best effort: append what was found (the fetch's record and the server's metric carry it too)."""
    try:
        with (entry.root / EVENTS).open("a") as f:
            f.write(json.dumps({"time": time.time(), "key": entry.key, "reason": reason}) + "\n")
    except OSError as exc:
        log.warning("could not record the corrupted cache entry: %s", exc)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def evict_lru(root: Path, max_bytes: int, keep: str) -> list[str]:
    """Remove least-recently-used entries (not `keep`, not locked) until the cache holds at most
    `max_bytes`; returns the evicted keys."""
    entries_dir = root / "entries"
    if not entries_dir.is_dir():
        return []
    entries = []
    for folder in entries_dir.iterdir():
        if not folder.is_dir() or folder.is_symlink():
            continue
        marker = folder / LAST_USED
        used = marker.stat().st_mtime if marker.exists() else 0.0
        entries.append((used, folder.name, _size(folder)))
    total = sum(size for _, _, size in entries)
    evicted: list[str] = []
    for _, key, size in sorted(entries):
        if total <= max_bytes:
            break
        entry = Entry(root, key)
        if key == keep or _is_locked(entry):
            continue
        with locked(entry):
            shutil.rmtree(entry.folder, ignore_errors=True)
        total -= size
        evicted.append(key)
        log.info("node cache: evicted %s (%d B, least recently used)", key, size)
    return evicted
