"""`infergate-server push`: put a model file or directory in an OCI registry as an artifact ORAS can read,
and print the pinned reference to put in spec.model.uri.

One layer per file, titled by its path relative to the pushed directory (a single file: its name), so the
fetch step verifies and places each file without unpacking anything. With `--image`, an OCI image instead:
one uncompressed tar layer holding the file or directory at the image's root (read-only, owned by root,
timestamps zeroed: the same input always gives the same digest), which a runtime with image volumes mounts
for spec.model.imageVolume. The printed digest is the one this command computed from the manifest it read
back, not one the registry announced.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import tarfile
import tempfile
from pathlib import Path

from .oci import TITLE, OciError, Reference, fetch_manifest, registry_client

PUSH_RE = re.compile(
    r"^oci://(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)
LAYER_TYPE = "application/vnd.infergate.model.file.v1"
IMAGE_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
IMAGE_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


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


def write_image_layer(path: Path, files: list[tuple[Path, str]], layer: Path) -> str:
    """An uncompressed tar of `files` under `path.name` at the image's root (a single file: the file
    itself), with its parent directories; returns its sha256 (the layer's digest and its diff id)."""
    top = path.name
    names = [top] if path.is_file() else [f"{top}/{title}" for _, title in files]
    dirs = sorted({"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)})
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o555
            tar.addfile(info)
        for (file, _), name in zip(files, names, strict=True):
            info = tarfile.TarInfo(name)
            info.size, info.mode = file.stat().st_size, 0o444
            with file.open("rb") as stream:
                tar.addfile(info, stream)
    digest = hashlib.sha256()
    with layer.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def push(path: Path, to: str, auth_file: Path | None = None, image: bool = False) -> str:
    """Push `path` to `to` (oci://<registry>/<repository>[:<tag>]; tag default 'latest'), as an artifact or
    with `image` as an OCI image; return oci://<registry>/<repository>@sha256:<digest> of the manifest as
    read back."""
    m = PUSH_RE.match(to)
    if m is None:
        raise OciError(f"--to: {to!r} is not oci://<registry>/<repository>[:<tag>]")
    tag = m["tag"] or "latest"
    files = _files(path)
    ref = Reference(m["registry"], m["repository"], "sha256:" + "0" * 64)
    registry = registry_client(ref, auth_file, "--to")
    with tempfile.TemporaryDirectory() as tmp:
        annotations = Path(tmp) / "annotations.json"
        config: str | None = None
        if image:
            layer = Path(tmp) / "layer.tar"
            diff_id = write_image_layer(path, files, layer)
            arch = GOARCH.get(platform.machine().lower(), platform.machine().lower())
            config_file = Path(tmp) / "config.json"
            config_file.write_text(
                json.dumps(
                    {"architecture": arch, "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}},
                    sort_keys=True,
                )
            )  # fmt: skip
            config = f"{config_file}:{IMAGE_CONFIG_TYPE}"
            layers = [f"{layer}:{IMAGE_LAYER_TYPE}"]
            annotations.write_text(json.dumps({str(layer): {}}))
        else:
            layers = [f"{p}:{LAYER_TYPE}" for p, _ in files]
            annotations.write_text(json.dumps({str(p): {TITLE: title} for p, title in files}))
        resp = registry.push(
            target=f"{ref.registry}/{ref.repository}:{tag}",
            files=layers,
            annotation_file=str(annotations),
            manifest_config=config,
            disable_path_validation=True,
            quiet=True,
        )
    digest = resp.headers.get("Docker-Content-Digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise OciError(f"--to: {ref.registry} did not return the manifest's digest")
    pinned = Reference(ref.registry, ref.repository, digest)
    fetch_manifest(registry, pinned, "--to")  # read back: its bytes must hash to that digest
    return pinned.uri
