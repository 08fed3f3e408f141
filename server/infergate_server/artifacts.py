"""Fetch a model artifact, verify it, and only then put it where the server loads it.

Digests: a file's is the SHA-256 of its bytes. A directory's is the **manifest digest**: list every regular
file under it (recursively; symlinks are refused) by its path relative to the directory, '/'-separated,
sorted by UTF-8 bytes; write one line `<sha256 hex of the file>  <relative path>\\n` per file (the format
of `sha256sum`); the digest is the SHA-256 of that text. The same value, by shell:
    (cd DIR && find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum

Sources: https:// (and http://), s3://bucket/key (a key ending in '/' is a prefix → a directory; the client
honours AWS_ENDPOINT_URL for S3-compatible stores), pvc://claim/path (read from <pvc root>/claim/path,
where the pod mounts its claims), file:// and plain paths. A download lands in a temporary name beside the
destination, is verified, and is renamed into place atomically; a mismatch deletes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from .config import SignatureConfig

log = logging.getLogger(__name__)

CHUNK = 1 << 20
DEFAULT_PVC_ROOT = "/mnt/pvc"


class ArtifactError(Exception):
    """The artifact could not be fetched or failed verification; the message says which and why."""


class DigestMismatch(ArtifactError):  # noqa: N818
    """The artifact's digest is not the pinned one."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in (*filenames, *dirnames):
            p = Path(dirpath) / name
            if p.is_symlink():
                raise ArtifactError(f"{p}: symlinks are not allowed inside a model directory")
        for name in filenames:
            p = Path(dirpath) / name
            yield p.relative_to(root).as_posix(), p


def manifest(root: Path) -> str:
    entries = sorted(_files(root), key=lambda e: e[0].encode("utf-8"))
    return "".join(f"{file_sha256(p)}  {rel}\n" for rel, p in entries)


def digest_of(path: Path) -> str:
    """SHA-256 of a file, or the manifest digest of a directory."""
    if path.is_dir():
        return hashlib.sha256(manifest(path).encode("utf-8")).hexdigest()
    if path.is_file():
        return file_sha256(path)
    raise ArtifactError(f"{path} does not exist")


def verify_digest(path: Path, expected: str) -> str:
    actual = digest_of(path)
    if actual != expected.lower():
        kind = "manifest digest" if path.is_dir() else "sha256"
        raise DigestMismatch(f"{path}: {kind} is {actual}, expected {expected} — refusing the artifact")
    return actual


def resolve_local(uri: str, pvc_root: Path) -> Path | None:
    """The local path a file://, pvc:// or plain-path URI names; None for remote schemes."""
    parsed = urlparse(uri)
    if parsed.scheme == "pvc":
        return pvc_root / parsed.netloc / parsed.path.lstrip("/")
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(uri)
    return None


def _download(uri: str, target: Path, pvc_root: Path) -> None:
    """Copy or download `uri` into `target` (which must not exist yet)."""
    local = resolve_local(uri, pvc_root)
    if local is not None:
        if local.is_dir():
            shutil.copytree(local, target, symlinks=True)
        elif local.is_file():
            shutil.copyfile(local, target)
        else:
            raise ArtifactError(f"{uri}: {local} does not exist")
        return
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _download_http(uri, target)
    elif scheme == "s3":
        _download_s3(uri, target)
    else:
        raise ArtifactError(f"{uri}: unsupported scheme {scheme!r} (https, s3, pvc, file or a path)")


def _download_http(uri: str, target: Path) -> None:
    import httpx

    try:
        with httpx.stream("GET", uri, follow_redirects=True, timeout=60.0) as resp:
            if resp.status_code != 200:
                raise ArtifactError(f"{uri}: HTTP {resp.status_code}")
            with target.open("wb") as f:
                for chunk in resp.iter_bytes(CHUNK):
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise ArtifactError(f"{uri}: {exc}") from None


def _download_s3(uri: str, target: Path) -> None:
    import boto3
    import botocore.exceptions

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    s3 = boto3.client("s3")
    try:
        if key.endswith("/") or not key:
            target.mkdir()
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            found = False
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(key) :]
                    if not rel or rel.endswith("/"):
                        continue
                    dest = target / rel
                    if ".." in Path(rel).parts:
                        raise ArtifactError(f"{uri}: object key {obj['Key']!r} escapes the prefix")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, obj["Key"], str(dest))
                    found = True
            if not found:
                raise ArtifactError(f"{uri}: no objects under the prefix")
        else:
            s3.download_file(bucket, key, str(target))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ArtifactError(f"{uri}: {exc}") from None


def verify_signature(model: Path, signature: SignatureConfig, bundle: Path) -> None:
    """Check an OpenSSF model-signing bundle over `model` (file or directory)."""
    try:
        import model_signing
    except ImportError as exc:
        raise ArtifactError(f"model.signature is set but model_signing is not installed: {exc}") from None
    cfg = model_signing.verifying.Config()  # type: ignore[no-untyped-call]
    if signature.public_key is not None:
        cfg = cfg.use_elliptic_key_verifier(public_key=signature.public_key)
    else:
        cfg = cfg.use_sigstore_verifier(identity=signature.identity or "", oidc_issuer=signature.issuer or "")
    try:
        cfg.verify(model, bundle)
    except Exception as exc:  # model_signing raises ValueError and friends for any failed check
        raise ArtifactError(f"{model}: signature verification failed: {exc}") from None


def fetch(
    uri: str,
    dest: Path,
    sha256: str | None,
    *,
    signature: SignatureConfig | None = None,
    pvc_root: Path = Path(DEFAULT_PVC_ROOT),
) -> str:
    """Put a verified copy of `uri` at `dest` and return its digest; nothing unverified lands at `dest`."""
    if sha256 is None:
        raise ArtifactError(f"{uri}: no sha256 given; refusing an unpinned artifact")
    if dest.exists():
        try:
            digest = verify_digest(dest, sha256)
        except DigestMismatch:
            log.warning("%s exists but does not match; fetching again", dest)
        else:
            log.info("%s already present and verified (%s)", dest, digest)
            return digest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        staged = work / dest.name
        _download(uri, staged, pvc_root)
        digest = verify_digest(staged, sha256)
        if signature is not None:
            bundle = work / "signature.bundle"
            _download(signature.bundle_uri, bundle, pvc_root)
            verify_signature(staged, signature, bundle)
        if dest.exists():
            old = work / "previous"
            dest.rename(old)
        staged.rename(dest)
        log.info("fetched %s to %s (%s)", uri, dest, digest)
        return digest
    except DigestMismatch as exc:
        raise DigestMismatch(str(exc).replace(str(work / dest.name), uri)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
