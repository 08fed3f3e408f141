"""`infergate-server push`: put a model file or directory in an OCI registry as an artifact ORAS can read,
and print the pinned reference to put in spec.model.uri.

One layer per file, titled by its path relative to the pushed directory (a single file: its name), so the
fetch step verifies and places each file without unpacking anything. The printed digest is the one this
command computed from the manifest it read back, not one the registry announced.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from .oci import TITLE, OciError, Reference, fetch_manifest, registry_client

PUSH_RE = re.compile(
    r"^oci://(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)
LAYER_TYPE = "application/vnd.infergate.model.file.v1"


def _files(path: Path) -> list[tuple[Path, str]]:
    if path.is_file():
        return [(path, path.name)]
    if not path.is_dir():
        raise OciError(f"{path}: not a file or a directory")
    files = []
    for p in sorted(path.rglob("*")):
        if p.is_symlink():
            raise OciError(f"{p}: symlinks are not allowed inside a model directory")
        if p.is_file():
            files.append((p, p.relative_to(path).as_posix()))
    if not files:
        raise OciError(f"{path}: no files to push")
    return files


def push(path: Path, to: str, auth_file: Path | None = None) -> str:
    """Push `path` to `to` (oci://<registry>/<repository>[:<tag>]; tag default 'latest'); return
    oci://<registry>/<repository>@sha256:<digest> of the manifest as read back."""
    m = PUSH_RE.match(to)
    if m is None:
        raise OciError(f"--to: {to!r} is not oci://<registry>/<repository>[:<tag>]")
    tag = m["tag"] or "latest"
    files = _files(path)
    ref = Reference(m["registry"], m["repository"], "sha256:" + "0" * 64)
    registry = registry_client(ref, auth_file, "--to")
    with tempfile.TemporaryDirectory() as tmp:
        annotations = Path(tmp) / "annotations.json"
        annotations.write_text(json.dumps({str(p): {TITLE: title} for p, title in files}))
        resp = registry.push(
            target=f"{ref.registry}/{ref.repository}:{tag}",
            files=[f"{p}:{LAYER_TYPE}" for p, _ in files],
            annotation_file=str(annotations),
            manifest_config=None,
            disable_path_validation=True,
            quiet=True,
        )
    digest = resp.headers.get("Docker-Content-Digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise OciError(f"--to: {ref.registry} did not return the manifest's digest")
    pinned = Reference(ref.registry, ref.repository, digest)
    fetch_manifest(registry, pinned, "--to")  # read back: its bytes must hash to that digest
    return pinned.uri
