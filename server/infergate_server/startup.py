"""Startup phase timings: the init container's fetch leaves a small record beside the artifact, the
server adds its own phases, and both reach /metrics as inference_startup_phase_seconds{phase}."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
RECORD_NAME = ".infergate-fetch.json"


@dataclass(frozen=True)
class FetchRecord:
    seconds: float
    bytes: int


def record_path(artifact: Path) -> Path:
    return artifact.parent / RECORD_NAME


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.is_file() else 0


def write_fetch_record(artifact: Path, record: FetchRecord) -> None:
    """Best effort: a fetch that worked never fails for want of its timing record."""
    try:
        record_path(artifact).write_text(json.dumps({"seconds": record.seconds, "bytes": record.bytes}))
    except OSError as exc:
        log.warning("could not write the fetch timing record: %s", exc)


def read_fetch_record(artifact: Path) -> FetchRecord | None:
    """The record the fetch left, or None (no init container, e.g. a local path, or unreadable)."""
    try:
        raw = json.loads(record_path(artifact).read_text())
        return FetchRecord(seconds=float(raw["seconds"]), bytes=int(raw["bytes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
