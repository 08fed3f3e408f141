"""The node cache: verified artifacts shared by the replicas on one node (a hostPath or a node-local PVC).

Layout under the cache root (`$INFERGATE_NODE_CACHE`, mounted read-write into the fetch step and
read-only into the server):

    entries/<key>/<artifact>        the verified copy (and, for oci://, its kept manifest beside it)
    entries/<key>/.last-used        touched on every fill and reuse: the LRU clock
    entries/<key>/.pin.json         the pin the entry was verified against (uri redacted, sha256, artifact):
                                    what the periodic sweep (cache_sweep.py) re-verifies it against
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
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

log = logging.getLogger(__name__)

CACHE_ENV = "INFERGATE_NODE_CACHE"
MAX_BYTES_ENV = "INFERGATE_NODE_CACHE_MAX_BYTES"
LAST_USED = ".last-used"
PIN = ".pin.json"
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


@contextlib.contextmanager
def try_locked(entry: Entry) -> Iterator[bool]:
    """Hold the entry's lock if it is free (yields True); yields False at once while a fetch holds it."""
    entry.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with entry.lock_path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
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


class Pin(BaseModel):
    """What an entry holds, as the fetch step verified it: re-verifying needs nothing else (no registry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str
    """The artifact's uri, redacted (no userinfo, no query string): oci:// pins by its digest."""
    sha256: str | None = None
    artifact: str
    """The artifact's path inside the entry (model.path's last part)."""

    @field_validator("artifact")
    @classmethod
    def _inside_the_entry(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts or path.parts[0] in (PIN, LAST_USED):
            raise ValueError(f"{value!r} is not a path inside the entry")
        return value

    def key(self) -> str:
        """The entry this pin belongs in, named as the operator names it (builders/configmap.py)."""
        if self.uri.startswith("oci://") and "@sha256:" in self.uri:
            return "oci-" + self.uri.rsplit("@sha256:", 1)[1]
        return f"sha256-{(self.sha256 or '').lower()}"


def pin_for(entry: Entry, uri: str, sha256: str | None, artifact: Path) -> Pin:
    """The pin of `artifact` (a model.path inside `entry`), its uri redacted: a presigned https:// query
    string is a credential and the cache outlives the pod."""
    from .sources import redact

    inside = artifact.resolve().relative_to(entry.folder.resolve()).as_posix()
    return Pin(uri=redact(uri), sha256=sha256, artifact=inside)


def write_pin(entry: Entry, pin: Pin) -> None:
    """Keep the pin beside the verified copy (atomically; unchanged pins are not rewritten; best effort)."""
    path = entry.folder / PIN
    body = pin.model_dump_json()
    with contextlib.suppress(OSError):
        if path.read_text() == body:
            return
    staged = path.with_name(f"{PIN}.{os.getpid()}")
    try:
        staged.write_text(body)
        staged.replace(path)
    except OSError as exc:  # the copy is verified and usable; only the sweep will skip it (unpinned)
        log.warning("node cache: could not keep the pin of %s: %s", entry.key, exc)


class PinError(Exception):
    """The entry's pin record is missing or unreadable."""


def read_pin(entry: Entry) -> Pin:
    path = entry.folder / PIN
    try:
        return Pin.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise PinError(
            f"{path}: no pin record (filled before pins were kept; reused entries get one)"
        ) from None
    except (OSError, ValidationError) as exc:
        raise PinError(f"{path}: unreadable pin record: {exc}") from None


def evict(entry: Entry) -> None:
    """Remove the entry's folder (the caller holds its lock). Open files of running servers stay readable."""
    shutil.rmtree(entry.folder, ignore_errors=True)


def record_corruption(entry: Entry, reason: str, found_by: str = "fetch") -> None:
    """Best effort: append what was found (the fetch's record, the server's and the sweep's metrics, and the
    sweep's Event carry it too). `found_by`: "fetch" (re-verification on reuse) or "sweep"."""
    line = {"time": time.time(), "key": entry.key, "reason": reason, "foundBy": found_by}
    try:
        with (entry.root / EVENTS).open("a") as f:
            f.write(json.dumps(line) + "\n")
    except OSError as exc:
        log.warning("could not record the corrupted cache entry: %s", exc)


def folder_bytes(folder: Path) -> int:
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
        entries.append((used, folder.name, folder_bytes(folder)))
    total = sum(size for _, _, size in entries)
    evicted: list[str] = []
    for _, key, size in sorted(entries):
        if total <= max_bytes:
            break
        entry = Entry(root, key)
        if key == keep or _is_locked(entry):
            continue
        with locked(entry):
            evict(entry)
        total -= size
        evicted.append(key)
        log.info("node cache: evicted %s (%d B, least recently used)", key, size)
    return evicted
