"""What the fetch step verified, so the server of the same pod need not hash the same bytes again.

The fetch step (the init container) verifies the artifact against its pin: a miss while downloading, a
node-cache hit by re-hashing the entry. It then records, in the pod's own fetch record, the pin it checked
and the identity of every file it checked: device, inode, size, mtime and ctime, in nanoseconds. The server
honours that stamp instead of hashing again only when the pins are the ones in its own config and every file
is still the same file, unmodified: any write, truncate, chmod, rename-over or utime changes the inode or the
ctime, and no unprivileged process can set a ctime back. Anything else (no stamp, another pin, one changed
file, an extra or missing file) and the server hashes as before.

The stamp is only as trustworthy as the record's location: the server reads it only from the pod's own
record directory ($INFERGATE_FETCH_RECORD_DIR, the pod's emptyDir, mounted read-only into the server), never
from beside an artifact in a node cache, which other pods' fetch steps can write.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from . import oci


class FileStamp(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the artifact's folder: the artifact itself, its files, or its kept manifest
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


class Stamp(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str | None
    sha256: str | None
    digest: str
    """The digest the fetch established (the manifest's for oci://, else the sha256 or manifest digest)."""
    files: tuple[FileStamp, ...]


def _files(artifact: Path) -> list[Path]:
    """The artifact's regular files (itself, or every file under it) and, for oci://, its kept manifest."""
    found = [artifact]
    if artifact.is_dir() and not artifact.is_symlink():
        found = sorted(p for p in artifact.rglob("*") if not (p.is_dir() and not p.is_symlink()))
    manifest = oci.manifest_path(artifact)
    if manifest.exists():
        found.append(manifest)
    return found


def _stamp_file(path: Path, base: Path) -> FileStamp:
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file")
    return FileStamp(
        path=path.relative_to(base).as_posix(),
        dev=st.st_dev,
        ino=st.st_ino,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
    )


def stamp_of(artifact: Path, uri: str | None, sha256: str | None, digest: str) -> Stamp | None:
    """The stamp of a copy just verified against `uri`/`sha256`; None when it holds anything but regular
    files (the server then hashes it)."""
    try:
        files = tuple(_stamp_file(p, artifact.parent) for p in _files(artifact))
    except (OSError, ValueError):
        return None
    return Stamp(uri=uri, sha256=sha256, digest=digest, files=files)


def unchanged_digest(stamp: Stamp, artifact: Path, uri: str | None, sha256: str | None) -> str | None:
    """The stamped digest when the stamp is for these pins and every file is the one stamped; else None."""
    if (stamp.uri, stamp.sha256) != (uri, sha256):
        return None
    current = stamp_of(artifact, uri, sha256, stamp.digest)
    if current is None or current.files != stamp.files:
        return None
    return stamp.digest
