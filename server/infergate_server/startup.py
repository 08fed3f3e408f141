"""Startup phase timings: the init container's fetch leaves a small record beside the artifact, the
server adds its own phases, and both reach /metrics as inference_startup_phase_seconds{phase}."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .verified_stamp import Stamp

log = logging.getLogger(__name__)
RECORD_NAME = ".infergate-fetch.json"


@dataclass(frozen=True)
class FetchRecord:
    seconds: float
    bytes: int
    cache: str | None = None
    """With a node cache: hit (a verified entry reused), miss (filled), refetched (an entry that did not
    verify was evicted and filled again); None without one."""
    verified: Stamp | None = None
    """What the fetch verified and the identity of each file it verified (verified_stamp.py)."""


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
        if record.verified is not None:
            doc["verified"] = record.verified.model_dump(mode="json")
        record_path(artifact).write_text(json.dumps(doc))
    except OSError as exc:
        log.warning("could not write the fetch timing record: %s", exc)


def read_fetch_record(artifact: Path) -> FetchRecord | None:
    """The record the fetch left, or None (no init container, e.g. a local path, or unreadable)."""
    try:
        raw = json.loads(record_path(artifact).read_text())
        cache = raw.get("cache")
        verified = raw.get("verified")
        return FetchRecord(
            seconds=float(raw["seconds"]),
            bytes=int(raw["bytes"]),
            cache=cache if cache in ("hit", "miss", "refetched") else None,
            verified=Stamp.model_validate(verified) if verified is not None else None,
        )
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None
