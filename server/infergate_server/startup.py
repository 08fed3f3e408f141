"""Startup phase timings: the init container's fetch leaves a small record beside the artifact, the
server adds its own phases, and both reach /metrics as inference_startup_phase_seconds{phase}."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
RECORD_NAME = ".infergate-fetch.json"


@dataclass(frozen=True)
class FetchRecord:
    seconds: float
    bytes: int
    cache: str | None = None
    """With a node cache: hit (a verified entry reused), miss (filled), refetched (an entry that did not
    verify was evicted and filled again); None without one."""


RECORD_DIR_ENV = "INFERGATE_FETCH_RECORD_DIR"
"""Where the record goes when the artifact sits in a shared node cache (the pod's own /models)."""


def record_path(artifact: Path) -> Path:
    folder = os.environ.get(RECORD_DIR_ENV)
    return (Path(folder) if folder else artifact.parent) / RECORD_NAME


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.is_file() else 0


def write_fetch_record(artifact: Path, record: FetchRecord) -> None:
    """Best effort: a fetch that worked never fails for want of its timing record."""
    try:
        doc: dict[str, object] = {"seconds": record.seconds, "bytes": record.bytes}
        if record.cache is not None:
            doc["cache"] = record.cache
        record_path(artifact).write_text(json.dumps(doc))
    except OSError as exc:
        log.warning("could not write the fetch timing record: %s", exc)


def read_fetch_record(artifact: Path) -> FetchRecord | None:
    """The record the fetch left, or None (no init container, e.g. a local path, or unreadable)."""
    try:
        raw = json.loads(record_path(artifact).read_text())
        cache = raw.get("cache")
        return FetchRecord(
            seconds=float(raw["seconds"]),
            bytes=int(raw["bytes"]),
            cache=cache if cache in ("hit", "miss", "refetched") else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
